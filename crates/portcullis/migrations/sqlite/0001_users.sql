-- Users. `username` is the name as registered and becomes the token's
-- `sub`; `username_key` (NFKC + Unicode case folding, computed in Rust) is
-- what makes `Alice`, `alice` and `ａｌｉｃｅ` one user, so it alone is unique.
create table users (
    id            integer primary key,
    username      text    not null,
    username_key  text    not null unique,
    email         text,
    full_name     text,
    -- PHC string (argon2id) or modular-crypt bcrypt from an import; never
    -- leaves the server.
    password_hash text    not null,
    -- Space-separated scope names, as in the `scope` claim: a user holds few
    -- scopes and they are always read together, so a join table buys nothing.
    scopes        text    not null default '',
    disabled      integer not null default 0 check (disabled in (0, 1)),
    -- Unix seconds; integers compare and index the same on both back ends.
    created_at    integer not null,
    updated_at    integer not null
);
