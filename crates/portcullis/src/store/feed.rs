//! The change feed: how a server learns that a token's standing changed
//! through another process (a second instance, the CLI), so it can answer
//! token checks from memory (`cached.rs`) without serving an old answer.
//!
//! Every statement that changes standing records a [`Change`] in its own
//! transaction: on PostgreSQL a `NOTIFY` (delivered at commit), on SQLite a
//! row in `standing_changes` that the server polls. Each back end's
//! `watch` loop hands what it reads to a [`ChangeSink`], and tells it when
//! the feed was last known to work (`alive`) and when changes may have been
//! missed (`lost`), so the sink can stop trusting what it holds.

use crate::clock::UnixTime;
use crate::domain::UserKey;

/// The PostgreSQL channel changes are announced on.
pub const CHANNEL: &str = "portcullis_standing";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A user was created, changed or deleted, or all their sessions ended.
    User(UserKey),
    /// A client was created, changed or deleted.
    Client(UserKey),
    /// One session ended.
    Session(String),
    /// An access token's `jti` was denied until `expires_at`.
    Denied {
        /// The token's `jti`.
        jti: String,
        /// When the token expires anyway.
        expires_at: UnixTime,
    },
}

impl Change {
    /// How the change is written in the feed: `u:KEY`, `c:KEY`, `s:SID`,
    /// `d:EXP:JTI`.
    pub fn subject(&self) -> String {
        match self {
            Change::User(key) => format!("u:{}", key.as_str()),
            Change::Client(key) => format!("c:{}", key.as_str()),
            Change::Session(sid) => format!("s:{sid}"),
            Change::Denied { jti, expires_at } => format!("d:{expires_at}:{jti}"),
        }
    }

    /// Reads a subject back; `None` for anything else (e.g. a heartbeat).
    pub fn parse(subject: &str) -> Option<Change> {
        let (kind, rest) = subject.split_once(':')?;
        match kind {
            "u" => Some(Change::User(UserKey::from_stored(rest.to_owned()))),
            "c" => Some(Change::Client(UserKey::from_stored(rest.to_owned()))),
            "s" => Some(Change::Session(rest.to_owned())),
            "d" => {
                let (expires_at, jti) = rest.split_once(':')?;
                Some(Change::Denied { jti: jti.to_owned(), expires_at: expires_at.parse().ok()? })
            }
            _ => None,
        }
    }
}

/// Where a feed delivers what it reads.
pub trait ChangeSink: Send + Sync + 'static {
    /// A change made by any process (this one included).
    fn changed(&self, change: Change);
    /// Changes may have been missed (a reconnect, a gap): drop what is held.
    fn lost(&self);
    /// The feed worked just now: nothing committed before this moment is
    /// still to come.
    fn alive(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_read_back_as_written() {
        for change in [
            Change::User(UserKey::from_stored("alice".into())),
            Change::User(UserKey::from_stored("a:b".into())),
            Change::Client(UserKey::from_stored("svc:a".into())),
            Change::Session("s1d:x".into()),
            Change::Denied { jti: "j:ti".into(), expires_at: 1_700_000_000 },
        ] {
            assert_eq!(Change::parse(&change.subject()), Some(change));
        }
        assert_eq!(Change::parse("ping:1234"), None);
        assert_eq!(Change::parse("d:soon:jti"), None);
        assert_eq!(Change::parse("nothing"), None);
    }
}
