-- Sessions: one per password-grant login. Its id is the access tokens'
-- `sid` claim, so ending a session (logout, password change, disable) also
-- stops its live access tokens without listing them.
create table sessions (
    id         text    primary key,
    user_key   text    not null references users (username_key) on delete cascade,
    -- The scopes granted at login: a refresh never grants more.
    scope      text    not null,
    created_at integer not null,
    -- Expiry of the newest refresh token; the row is pruned after it.
    expires_at integer not null,
    revoked_at integer
);
create index sessions_user on sessions (user_key);

-- Refresh tokens, stored only as SHA-256 (they carry 256 random bits, so a
-- slow hash adds nothing). A used one is kept, marked, until it expires: it
-- is how reuse is detected (and the whole family revoked).
create table refresh_tokens (
    token_hash text    primary key,
    session_id text    not null references sessions (id) on delete cascade,
    created_at integer not null,
    expires_at integer not null,
    used_at    integer
);
create index refresh_tokens_session on refresh_tokens (session_id);

-- Access tokens denied before their expiry (revocation, logout), by `jti`.
-- Pruned once expired: a token past `exp` is refused anyway.
create table denied_tokens (
    jti        text    primary key,
    expires_at integer not null
);

-- Signing keys, shared by every instance on this database. The private part
-- is sealed (ChaCha20-Poly1305, key derived from the configured secret); it
-- is null for the HS256 key that is the secret itself. The key with no
-- `superseded_at` signs; superseded ones keep verifying until every token
-- they signed has expired.
create table signing_keys (
    kid            text    primary key,
    algorithm      text    not null,
    sealed_private blob,
    public_jwk     text,
    created_at     integer not null,
    superseded_at  integer
);
