//! `portcullis keys …` and `portcullis token decode`: the signing keys in the
//! database, seen and changed from the command line.

use anyhow::{Context as _, bail};
use portcullis_verify::{KeySet, Verifier};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::keyring::{self, state_of};
use crate::auth::keys::{KeyAlgorithm, Sealer};
use crate::cli::{KeysCommand, TokenCommand};
use crate::config::{self, FileConfig};
use crate::store::SharedStore;

/// What the key commands need: the database and the secret that seals keys.
pub struct Context {
    store: SharedStore,
    secret: SecretString,
    master_key: Option<SecretString>,
    /// Access-token lifetime, to tell verifying keys from retired ones.
    access_ttl: i64,
}

impl Context {
    /// Opens the database named by flag, env or file, and finds its secret.
    ///
    /// # Errors
    /// No database or no secret.
    pub async fn open(
        file: &FileConfig,
        database_url: Option<String>,
        secret_key_file: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let url = file.database_url(database_url);
        let store = crate::store::open(&url, &Default::default()).await.context("opening database")?;
        let from_env = std::env::var("PORTCULLIS_SECRET_KEY").ok().filter(|s| !s.is_empty());
        let secret_file = file.secret_key_file(secret_key_file);
        let secret = crate::server::load_secret(&url, from_env.as_deref(), secret_file.as_deref(), false)?;
        let from_env =
            std::env::var("PORTCULLIS_ACCESS_TOKEN_TTL").ok().map(|t| config::parse_duration(&t)).transpose()?;
        let access_ttl = from_env.or(file.access_token_ttl()?).map_or(15 * 60, |d| d.as_secs() as i64);
        Ok(Context { store, secret, master_key: config::master_key_from_env()?, access_ttl })
    }
}

impl Context {
    fn sealer(&self) -> Sealer {
        Sealer::for_deployment(self.secret.expose_secret(), self.master_key.as_ref().map(|k| k.expose_secret()))
    }
}

/// Runs `keys list` or `keys rotate`.
///
/// # Errors
/// A database error, or keys sealed with another secret.
pub async fn run_keys(command: KeysCommand, cx: &Context) -> anyhow::Result<()> {
    let now = crate::clock::unix_now() as i64;
    match command {
        KeysCommand::List => {
            let rows = cx.store.list_keys().await?;
            println!("{:<28} {:<6} {:<10} CREATED", "KID", "ALG", "STATE");
            for row in &rows {
                let state = state_of(row, now, cx.access_ttl);
                println!("{:<28} {:<6} {:<10} {}", row.kid, row.algorithm, state.as_str(), row.created_at);
            }
        }
        KeysCommand::Rotate { use_secret: true, .. } => {
            let kid = keyring::rotate_to_secret(&cx.store, cx.secret.expose_secret(), now).await?;
            println!(
                "new signing key {kid} (HS256, the configured secret); running servers switch to it within 5 seconds"
            );
            println!("note: servers must now run with this secret key");
        }
        KeysCommand::Rotate { algorithm, .. } => {
            let rows = cx.store.list_keys().await?;
            let current = rows.iter().find(|r| r.superseded_at.is_none());
            let algorithm = match (algorithm, current) {
                (Some(a), _) => a,
                (None, Some(row)) => KeyAlgorithm::parse(&row.algorithm).unwrap_or(KeyAlgorithm::Hs256),
                (None, None) => KeyAlgorithm::Hs256,
            };
            let sealer = cx.sealer();
            // Refuse to rotate with a secret that cannot open the current key:
            // servers with the right secret could not use the new one.
            keyring::load(&rows, cx.secret.expose_secret(), &sealer, now, cx.access_ttl)
                .context("the configured secret key does not match the one the server uses")?;
            let kid = keyring::rotate(&cx.store, &sealer, algorithm, now).await?;
            println!("new signing key {kid} ({algorithm}); running servers switch to it within 5 seconds");
            if algorithm == KeyAlgorithm::Hs256 {
                println!(
                    "note: it is a random key, no longer the secret: resource servers that verify with the secret will refuse new tokens"
                );
            }
        }
    }
    Ok(())
}

/// Runs `token decode`.
///
/// # Errors
/// A refused token, saying why.
pub async fn run_token(command: TokenCommand, cx: &Context) -> anyhow::Result<()> {
    let TokenCommand::Decode { jwt } = command;
    let now = crate::clock::unix_now() as i64;
    let rows = cx.store.list_keys().await?;
    let sealer = cx.sealer();
    let keys = keyring::load(&rows, cx.secret.expose_secret(), &sealer, now, cx.access_ttl)?;
    let verifier = Verifier::builder(KeySet::new(keys.verify.iter().cloned())).build();
    let claims = match verifier.verify(jwt.trim(), now as u64) {
        Ok(claims) => claims,
        Err(e) => bail!("token refused: {e}"),
    };
    let sid = crate::auth::tokens::session_of(&claims);
    let key = crate::domain::Username::key_of(&claims.sub);
    let standing = cx.store.token_standing(&key, sid, &claims.jti).await?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    match standing {
        None => bail!("token refused: user no longer exists"),
        Some(s) if s.denied => bail!("token refused: it has been revoked"),
        Some(s) if s.session_ended => bail!("token refused: its session has ended"),
        Some(s) if s.user_disabled => bail!("token refused: user is disabled"),
        Some(_) => println!("valid: signature, lifetime and standing checked"),
    }
    Ok(())
}
