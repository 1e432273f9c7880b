-- The change feed on SQLite: every change to a token's standing (a user
-- changed or deleted, a session ended, a token denied) adds a row in the
-- same transaction, and every server polls for rows it has not read, so a
-- change made by the CLI or another process holds there within a poll.
-- `autoincrement`: numbers are never reused, so a pruned row is a visible gap.
create table standing_changes (
    seq     integer primary key autoincrement,
    subject text not null,
    at      integer not null
);
create index standing_changes_at on standing_changes (at);
