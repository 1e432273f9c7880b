//! `portcullis keys list|rotate`: the signing keys in the database, seen and
//! changed from the command line while servers run.

use anyhow::Context as _;

use crate::auth::keyring::{self, state_of};
use crate::auth::signing::KeyAlgorithm;
use crate::cli::KeysCommand;
use crate::clock::UnixTime;
use crate::config::Deployment;
use crate::store::SharedStore;

/// Runs `keys list` or `keys rotate`.
///
/// # Errors
/// A database error, or keys sealed with another secret.
pub async fn run(
    command: KeysCommand,
    store: &SharedStore,
    deployment: &Deployment,
    now: UnixTime,
) -> anyhow::Result<()> {
    let ttl = deployment.access_ttl_secs();
    match command {
        KeysCommand::List => {
            let rows = store.list_keys().await?;
            println!("{:<28} {:<6} {:<10} CREATED", "KID", "ALG", "STATE");
            for row in &rows {
                let state = state_of(row, now, ttl);
                println!("{:<28} {:<6} {:<10} {}", row.kid, row.algorithm, state.as_str(), row.created_at);
            }
        }
        KeysCommand::Rotate { use_secret: true, .. } => {
            let secrets = deployment.secrets(false)?;
            let kid = keyring::rotate_to_secret(store, &secrets, now).await?;
            println!(
                "new signing key {kid} (HS256, the configured secret); running servers switch to it within 5 seconds"
            );
            println!("note: servers must now run with this secret key");
        }
        KeysCommand::Rotate { algorithm, .. } => {
            let secrets = deployment.secrets(false)?;
            let rows = store.list_keys().await?;
            let current = rows.iter().find(|r| r.superseded_at.is_none());
            let algorithm = match (algorithm, current) {
                (Some(a), _) => a,
                (None, Some(row)) => KeyAlgorithm::parse(&row.algorithm).unwrap_or(KeyAlgorithm::Hs256),
                (None, None) => KeyAlgorithm::Hs256,
            };
            // Refuse to rotate with a secret that cannot open the current key:
            // servers with the right secret could not use the new one.
            keyring::unseal_keys(rows, &secrets, now, ttl)
                .context("the configured secret key does not match the one the server uses")?;
            let kid = keyring::rotate(store, &secrets, algorithm, now).await?;
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
