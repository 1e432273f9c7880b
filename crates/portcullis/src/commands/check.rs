//! `portcullis check`: audits a deployment (the settings `serve` would run
//! with, and its database) against the tutorials' common mistakes. One line
//! per check, `pass`, `warn` or `fail` with what to do; exit 1 on any fail.

use std::time::Duration;

use serde::Serialize;

use crate::config::ServeConfig;
use crate::server::{BOOTSTRAP_HASH_SETTING, fingerprint};
use crate::store::SharedStore;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but look at it.
    Warn,
    /// Fix before running in production.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found and what to do.
    pub message: String,
}

fn finding(check: &'static str, status: Status, message: impl Into<String>) -> Finding {
    Finding { check, status, message: message.into() }
}

/// Runs every check. The database is opened only when it exists (a SQLite
/// file not created yet is reported, not created).
pub async fn audit(config: &ServeConfig, store: Option<&SharedStore>) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(match config.deployment.secrets(false) {
        Ok(_) => finding("secret", Status::Pass, "the signing secret is long and not a known one"),
        Err(e) if format!("{e:#}").contains("start the server once to generate") => {
            finding("secret", Status::Warn, format!("{e:#}"))
        }
        Err(e) => finding("secret", Status::Fail, format!("{e:#}")),
    });
    let ttl = config.deployment.access_token_ttl;
    out.push(if ttl > Duration::from_secs(3600) {
        finding(
            "access-token-ttl",
            Status::Warn,
            format!(
                "access tokens live {}: a stolen one works that long; keep it at an hour or less \
                 (--access-token-ttl 15m) and let clients refresh",
                humantime::format_duration(ttl)
            ),
        )
    } else {
        finding("access-token-ttl", Status::Pass, format!("access tokens live {}", humantime::format_duration(ttl)))
    });
    let bind = config.bind.ip();
    out.push(if !bind.is_loopback() && config.trusted_proxies.is_empty() {
        finding(
            "bind",
            Status::Warn,
            format!(
                "serving plain HTTP on {bind}, not loopback, with no --trusted-proxies: passwords and tokens \
                 cross the network in the clear unless a TLS proxy is in front (then set --trusted-proxies)"
            ),
        )
    } else {
        finding("bind", Status::Pass, format!("listening on {}", config.bind))
    });
    out.push(if config.allow_registration {
        finding("registration", Status::Warn, "anyone can create an account (--allow-registration): is that meant?")
    } else {
        finding("registration", Status::Pass, "self-registration is off")
    });
    out.push(match &config.issuer {
        Some(issuer) => finding("issuer", Status::Pass, format!("issuer {issuer}")),
        None => finding(
            "issuer",
            Status::Warn,
            "no --issuer: tokens carry the one this database fixed at its first start (from its bind address); \
             set --issuer to the URL clients reach portcullis at",
        ),
    });
    out.push(if config.audience.is_empty() {
        finding(
            "audience",
            Status::Warn,
            "no --audience: a token for one service is accepted by every other; set one once resource servers \
             check `aud`",
        )
    } else {
        finding("audience", Status::Pass, format!("audience {}", config.audience.join(", ")))
    });
    let Some(store) = store else {
        out.push(finding("database", Status::Warn, "the database does not exist yet: run `portcullis migrate`"));
        return out;
    };
    out.extend(database_checks(store).await);
    out
}

async fn database_checks(store: &SharedStore) -> Vec<Finding> {
    let mut out = Vec::new();
    match store.count_bcrypt_hashes().await {
        Ok(0) => out.push(finding("bcrypt-hashes", Status::Pass, "every password hash is argon2id")),
        Ok(n) => out.push(finding(
            "bcrypt-hashes",
            Status::Warn,
            format!("{n} user(s) still have an imported bcrypt hash; each is replaced by argon2id at its next login"),
        )),
        Err(e) => out.push(finding("bcrypt-hashes", Status::Fail, format!("could not read users: {e}"))),
    }
    let admin = crate::domain::Username::lookup_key("admin");
    let first = store.setting(BOOTSTRAP_HASH_SETTING).await.ok().flatten();
    let user = match admin {
        Some(key) => store.user_by_key(&key).await.ok().flatten(),
        None => None,
    };
    out.push(match (first, user) {
        (Some(first), Some(user)) if first == fingerprint(&user.password_hash) && !user.disabled => finding(
            "bootstrap-password",
            Status::Warn,
            "`admin` still has the password it was created with: change it (portcullis user passwd admin)",
        ),
        _ => finding("bootstrap-password", Status::Pass, "the first admin password was changed (or admin is gone)"),
    });
    match store.list_keys().await {
        Ok(keys) => {
            let signing = keys.iter().rev().find(|k| k.superseded_at.is_none());
            out.push(match signing {
                Some(key) if key.algorithm.eq_ignore_ascii_case("HS256") => finding(
                    "algorithm",
                    Status::Warn,
                    "tokens are signed with HS256: every service that verifies them holds the secret and can mint \
                     tokens; once more than one service verifies, switch to public keys (portcullis keys rotate \
                     --algorithm EdDSA) and point them at /.well-known/jwks.json",
                ),
                Some(key) => finding("algorithm", Status::Pass, format!("tokens are signed with {}", key.algorithm)),
                None => finding("algorithm", Status::Warn, "no signing key yet: one is made at first start"),
            });
        }
        Err(e) => out.push(finding("algorithm", Status::Fail, format!("could not read signing keys: {e}"))),
    }
    out
}

/// Prints the findings, one line each (or a JSON array), and whether any
/// failed.
pub fn print(findings: &[Finding], json: bool) -> bool {
    if json {
        println!("{}", serde_json::to_string_pretty(findings).expect("findings serialize"));
    } else {
        for f in findings {
            let status = match f.status {
                Status::Pass => "pass",
                Status::Warn => "warn",
                Status::Fail => "fail",
            };
            println!("{status}  {:<20} {}", f.check, f.message);
        }
    }
    findings.iter().any(|f| f.status == Status::Fail)
}
