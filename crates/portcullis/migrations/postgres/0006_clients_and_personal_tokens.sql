-- Registered OAuth clients; ids share the usernames' namespace (same key
-- and skeleton rules). The secret is stored only as its SHA-256.
create table clients (
    client_key  text    primary key,
    client_id   text    not null,
    secret_hash text    not null,
    scopes      text    not null default '',
    description text,
    disabled    boolean not null default false,
    -- The `sid` of the client's tokens; replaced when a rotation revokes them.
    generation  text    not null,
    created_at  bigint  not null,
    updated_at  bigint  not null
);

create table client_skeletons (
    skeleton   text primary key,
    client_key text not null references clients (client_key) on delete cascade
);
create index client_skeletons_client on client_skeletons (client_key);

-- Personal access tokens are sessions of kind 'pat' (see the SQLite migration).
alter table sessions add column kind text not null default 'login';
alter table sessions add column name text;
alter table sessions add column token_hash text;
-- The client a login was made through, if any: its refresh tokens work for
-- that client only (RFC 6749 §6), and its access tokens carry `client_id`.
alter table sessions add column client_id text;
create unique index sessions_token_hash on sessions (token_hash);
