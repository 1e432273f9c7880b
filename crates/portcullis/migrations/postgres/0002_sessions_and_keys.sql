-- Sessions: one per password-grant login. Its id is the access tokens'
-- `sid` claim, so ending a session also stops its live access tokens.
create table sessions (
    id         text   primary key,
    user_key   text   not null references users (username_key) on delete cascade,
    scope      text   not null,
    created_at bigint not null,
    expires_at bigint not null,
    revoked_at bigint
);
create index sessions_user on sessions (user_key);

-- Refresh tokens, stored only as SHA-256. A used one stays, marked, until it
-- expires: presenting it again is reuse, and revokes the whole session.
create table refresh_tokens (
    token_hash text   primary key,
    session_id text   not null references sessions (id) on delete cascade,
    created_at bigint not null,
    expires_at bigint not null,
    used_at    bigint
);
create index refresh_tokens_session on refresh_tokens (session_id);

-- Access tokens denied before their expiry, by `jti`; pruned once expired.
create table denied_tokens (
    jti        text   primary key,
    expires_at bigint not null
);

-- Signing keys shared by every instance. The private part is sealed with a
-- key derived from the configured secret (null for the HS256 key that is the
-- secret itself).
create table signing_keys (
    kid            text   primary key,
    algorithm      text   not null,
    sealed_private bytea,
    public_jwk     text,
    created_at     bigint not null,
    superseded_at  bigint
);
-- At most one active key, whatever races.
create unique index signing_keys_one_active on signing_keys ((superseded_at is null)) where superseded_at is null;
