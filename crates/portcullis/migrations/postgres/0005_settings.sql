-- Deployment settings fixed when the database is created and shared by every
-- instance on it: `issuer` (the `iss` of tokens when no --issuer is given,
-- so a restart on another address, or a second instance, keeps it).
create table settings (
    name  text primary key,
    value text not null
);
