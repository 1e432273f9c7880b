-- UTS #39 confusable skeletons of users' names (computed in Rust): of the
-- key, and of the name as written when that differs (capital I looks like
-- l). Names that look alike (Cyrillic `аdmin` and `admin`, `adrnin` and
-- `admin`) share one, and the primary key keeps a new lookalike out, even
-- when two are registered at once. A table, not a column: a user's two
-- skeletons must be unique against both of every other user's. Users stored
-- before it get theirs at start, unless one is another user's already.
create table username_skeletons (
    skeleton text primary key,
    user_key text not null references users (username_key) on delete cascade
);
create index username_skeletons_user on username_skeletons (user_key);
