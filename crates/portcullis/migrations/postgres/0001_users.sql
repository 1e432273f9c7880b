-- Users. `username` is the name as registered and becomes the token's
-- `sub`; `username_key` (NFKC + Unicode case folding, computed in Rust) is
-- what makes `Alice`, `alice` and `ａｌｉｃｅ` one user, so it alone is unique.
-- The schema mirrors migrations/sqlite so one set of SQL serves both.
create table users (
    id            bigint  generated always as identity primary key,
    username      text    not null,
    username_key  text    not null unique,
    email         text,
    full_name     text,
    -- PHC string (argon2id) or modular-crypt bcrypt from an import; never
    -- leaves the server.
    password_hash text    not null,
    -- Space-separated scope names, as in the `scope` claim.
    scopes        text    not null default '',
    disabled      boolean not null default false,
    -- Unix seconds, as on SQLite: the same integers on both back ends.
    created_at    bigint  not null,
    updated_at    bigint  not null
);
