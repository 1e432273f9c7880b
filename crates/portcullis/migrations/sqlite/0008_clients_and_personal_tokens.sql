-- Registered OAuth clients (machine callers). `client_key` is the id's key
-- computed as a username's (NFKC + case folding): client ids and usernames
-- share one namespace, so a resource server reading `sub` as a username can
-- never take a client for a user. The secret carries 256 random bits and is
-- stored only as its SHA-256.
create table clients (
    client_key  text    primary key,
    client_id   text    not null,
    secret_hash text    not null,
    scopes      text    not null default '',
    description text,
    disabled    integer not null default 0 check (disabled in (0, 1)),
    -- The `sid` of the client's tokens: replaced when a secret rotation
    -- revokes them, which ends every token issued before.
    generation  text    not null,
    created_at  integer not null,
    updated_at  integer not null
);

-- UTS #39 skeletons of client ids, beside `username_skeletons`: a new user
-- or client whose name has one of the other table's skeletons is refused.
create table client_skeletons (
    skeleton   text primary key,
    client_key text not null references clients (client_key) on delete cascade
);
create index client_skeletons_client on client_skeletons (client_key);

-- Personal access tokens are sessions of their own kind: the access tokens
-- they are exchanged for carry the PAT's id as `sid`, so deleting the PAT,
-- or disabling its user, ends them through the same standing check. Only
-- the PAT's SHA-256 is stored. A password change ends `login` sessions only.
alter table sessions add column kind text not null default 'login';
alter table sessions add column name text;
alter table sessions add column token_hash text;
-- The client a login was made through, if any: its refresh tokens work for
-- that client only (RFC 6749 §6), and its access tokens carry `client_id`.
alter table sessions add column client_id text;
create unique index sessions_token_hash on sessions (token_hash);
