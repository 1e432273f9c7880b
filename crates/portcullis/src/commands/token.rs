//! `portcullis token decode`: verifies a token with the database's keys, as
//! a server would, and prints its claims or why it is refused.

use anyhow::bail;
use portcullis_verify::Verifier;

use crate::auth::keyring;
use crate::auth::standing;
use crate::cli::TokenCommand;
use crate::clock::UnixTime;
use crate::config::Deployment;
use crate::store::SharedStore;

/// Runs `token decode`.
///
/// # Errors
/// A refused token, saying why.
pub async fn run(
    command: TokenCommand,
    store: &SharedStore,
    deployment: &Deployment,
    now: UnixTime,
) -> anyhow::Result<()> {
    let TokenCommand::Decode { jwt } = command;
    let secrets = deployment.secrets(false)?;
    let keys = keyring::unseal_keys(store.list_keys().await?, &secrets, now, deployment.access_ttl_secs())?;
    let verifier = Verifier::builder(keys.verify.clone()).build();
    let claims = match verifier.verify(jwt.trim(), now) {
        Ok(claims) => claims,
        Err(e) => bail!("token refused: {e}"),
    };
    let refusal = standing::why_refused(store, &claims).await?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    if let Some(why) = refusal {
        bail!("token refused: {why}");
    }
    println!("valid: signature, lifetime and standing checked");
    Ok(())
}
