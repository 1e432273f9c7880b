-- Failed logins per bucket ("user:KEY" or "addr:IP") in a fixed window, for
-- throttling. In the database so every instance counts the same failures.
create table login_failures (
    bucket       text    primary key,
    failures     integer not null,
    window_start integer not null
);
