//! `portcullis client …`: OAuth clients, straight in the database. Running
//! servers hear of every change through the change feed within a second.

use anyhow::{Context, bail};

use crate::auth::clients;
use crate::cli::ClientCommand;
use crate::clock::UnixTime;
use crate::domain::{Scopes, UserKey, Username};
use crate::http::clients::{ClientInfo, parse_client_id, parse_description};
use crate::store::{ClientPatch, SharedStore, StoreError};

/// Runs one `client` subcommand.
///
/// # Errors
/// What failed, worded for the person at the terminal.
pub async fn run(command: ClientCommand, store: &SharedStore, now: UnixTime) -> anyhow::Result<()> {
    match command {
        ClientCommand::Add { name, scopes, description } => {
            let client_id = parse_client_id(&name).map_err(|e| anyhow::anyhow!(e.0))?;
            let scopes = Scopes::parse(&scopes).map_err(|e| anyhow::anyhow!("--scopes: {}", e.0))?;
            let description = parse_description(description).map_err(|e| anyhow::anyhow!(e.0))?;
            match clients::register(store, client_id, scopes, description, now).await {
                Ok((client, secret)) => {
                    println!("created client {:?}", client.client_id.as_str());
                    println!("client_secret: {secret}");
                    println!("(shown once: it is stored only as a hash)");
                    Ok(())
                }
                Err(StoreError::Conflict) => {
                    bail!("a user or client named {name:?} already exists (names ignore case and width)")
                }
                Err(StoreError::Confusable) => bail!(
                    "client id {name:?} looks like an existing user's or client's name (same UTS #39 skeleton): choose another"
                ),
                Err(e) => Err(e.into()),
            }
        }
        ClientCommand::List { json } => {
            let all = store.list_clients().await?;
            if json {
                let infos: Vec<ClientInfo> = all.iter().map(ClientInfo::from).collect();
                println!("{}", serde_json::to_string_pretty(&infos)?);
            } else {
                println!("{:<24} {:<9} {:<24} DESCRIPTION", "CLIENT_ID", "DISABLED", "SCOPES");
                for c in &all {
                    let scopes = c.scopes.to_string();
                    let description = c.description.as_deref().unwrap_or("");
                    println!("{:<24} {:<9} {:<24} {description}", c.client_id.as_str(), c.disabled, scopes);
                }
            }
            Ok(())
        }
        ClientCommand::RotateSecret { name, revoke_tokens } => {
            let key = existing(&name)?;
            let (client, secret) =
                clients::rotate(store, &key, revoke_tokens, now).await?.with_context(|| not_found(&name))?;
            println!("new secret for client {:?}", client.client_id.as_str());
            println!("client_secret: {secret}");
            if revoke_tokens {
                println!("every token issued to it before now is revoked");
            }
            Ok(())
        }
        ClientCommand::Disable { name } => set_disabled(store, &name, true, now).await,
        ClientCommand::Enable { name } => set_disabled(store, &name, false, now).await,
        ClientCommand::Delete { name } => {
            if !store.delete_client(&existing(&name)?, now).await? {
                bail!(not_found(&name));
            }
            println!("deleted client {name:?}");
            Ok(())
        }
    }
}

fn not_found(name: &str) -> String {
    format!("no client named {name:?}")
}

fn existing(name: &str) -> anyhow::Result<UserKey> {
    Username::lookup_key(name).with_context(|| not_found(name))
}

async fn set_disabled(store: &SharedStore, name: &str, disabled: bool, now: UnixTime) -> anyhow::Result<()> {
    // Disabling ends its tokens for good (a new token generation).
    let patch = ClientPatch {
        disabled: Some(disabled),
        generation: disabled.then(clients::new_generation),
        ..ClientPatch::default()
    };
    let client = store.update_client(&existing(name)?, &patch, now).await?.with_context(|| not_found(name))?;
    let state = if disabled { "disabled" } else { "enabled" };
    println!("{state} client {:?}", client.client_id.as_str());
    Ok(())
}
