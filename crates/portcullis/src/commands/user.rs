//! `portcullis user …`: manage users in the same database the server uses,
//! while it runs (SQLite in WAL mode, or PostgreSQL).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::auth::password;
use crate::cli::UserCommand;
use crate::clock::UnixTime;
use crate::domain::{NewPassword, Scopes, StoredHash, UserKey, Username};
use crate::profile::Profile;
use crate::store::{NewUser, SharedStore, StoreError, User, UserPatch};

/// Runs one `user` subcommand.
///
/// # Errors
/// A refused value, a missing user, or a database error.
pub async fn run(command: UserCommand, store: &SharedStore, now: UnixTime) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, email, full_name, scopes, admin, password_stdin } => {
            let username = Username::parse(&name)?;
            let mut scopes = Scopes::parse(&scopes)?;
            if admin {
                scopes = Scopes::from_names(scopes.iter().chain(["admin"]))?;
            }
            let password = read_new_password(password_stdin)?;
            let user = NewUser {
                username,
                email: clean(email),
                full_name: clean(full_name),
                scopes,
                disabled: false,
                password_hash: hash_off_runtime(password).await?,
            };
            match store.insert_user(&user, now).await {
                Ok(created) => println!("created user {:?}", created.username.as_str()),
                Err(StoreError::Conflict) => {
                    bail!("a user or client named {name:?} already exists (names ignore case and width)")
                }
                Err(StoreError::Confusable) => {
                    bail!(
                        "username {name:?} looks like an existing user's or client's name (same UTS #39 skeleton): choose another"
                    )
                }
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::List { json } => {
            let users = all_users(store).await?;
            if json {
                let profiles: Vec<Profile> = users.iter().map(Profile::from).collect();
                println!("{}", serde_json::to_string_pretty(&profiles)?);
            } else {
                println!("{:<24} {:<9} {:<24} EMAIL", "USERNAME", "DISABLED", "SCOPES");
                for u in &users {
                    let scopes = u.scopes.to_string();
                    println!(
                        "{:<24} {:<9} {:<24} {}",
                        u.username,
                        u.disabled,
                        scopes,
                        u.email.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        UserCommand::Passwd { name, password_stdin } => {
            let key = existing_key(store, &name).await?;
            let password = read_new_password(password_stdin)?;
            let hash = hash_off_runtime(password).await?;
            // Through a patch, so the user's sessions end with the old password.
            let patch = UserPatch { password_hash: Some(hash), ..UserPatch::default() };
            store.update_user(&key, &patch, now).await?;
            println!("password of {name:?} changed; their sessions are ended");
        }
        UserCommand::Disable { name } => {
            let key = existing_key(store, &name).await?;
            store.update_user(&key, &UserPatch { disabled: Some(true), ..UserPatch::default() }, now).await?;
            println!("user {name:?} disabled; their sessions are ended");
        }
        UserCommand::Enable { name } => {
            let key = existing_key(store, &name).await?;
            store.update_user(&key, &UserPatch { disabled: Some(false), ..UserPatch::default() }, now).await?;
            println!("user {name:?} enabled");
        }
        UserCommand::Delete { name } => {
            let key = existing_key(store, &name).await?;
            store.delete_user(&key, now).await?;
            println!("user {name:?} deleted");
        }
        UserCommand::Import { file } => import(store, &file, now).await?,
    }
    Ok(())
}

fn clean(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

async fn existing_key(store: &SharedStore, name: &str) -> anyhow::Result<UserKey> {
    let found = match Username::lookup_key(name) {
        Some(key) => store.user_by_key(&key).await?,
        None => None,
    };
    match found {
        Some(user) => Ok(user.username.key().clone()),
        None => bail!("no user named {name:?}"),
    }
}

async fn all_users(store: &SharedStore) -> anyhow::Result<Vec<User>> {
    let mut all = Vec::new();
    let mut after: Option<UserKey> = None;
    loop {
        let page = store.list_users(after.as_ref(), 500).await?;
        let done = page.len() < 500;
        after = page.last().map(|u| u.username.key().clone());
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// Hashing is slow: keep it off the async worker even in the CLI.
async fn hash_off_runtime(password: NewPassword) -> anyhow::Result<StoredHash> {
    tokio::task::spawn_blocking(move || password::hash(password.expose())).await.context("hashing the password")
}

/// Reads a new password: one line of stdin with `--password-stdin`, else
/// twice from the terminal without echo.
fn read_new_password(from_stdin: bool) -> anyhow::Result<NewPassword> {
    let raw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to read the password from: pass --password-stdin and pipe it in");
        }
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Password (again): ").context("reading the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        first
    };
    Ok(NewPassword::parse(raw)?)
}

/// One user of the FastAPI tutorial's `fake_users_db`.
#[derive(Deserialize)]
struct ImportedUser {
    username: String,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    hashed_password: String,
    #[serde(default)]
    disabled: bool,
}

/// The 1-based line of the file where `needle` first appears (where an
/// entry's hash is written), to point at what to fix.
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(0, |at| text[..at].matches('\n').count() + 1)
}

/// Imports `{ "alice": { "username": …, "hashed_password": "$2b$12$…", … } }`.
/// Every entry is checked before anything is written; users that already
/// exist are left as they are and reported.
async fn import(store: &SharedStore, file: &Path, now: UnixTime) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let users = parse_import(&text).with_context(|| file.display().to_string())?;
    refuse_lookalikes(store, &users).await.with_context(|| file.display().to_string())?;
    let (mut created, mut skipped) = (0, Vec::new());
    for user in &users {
        match store.insert_user(user, now).await {
            Ok(_) => created += 1,
            Err(StoreError::Conflict) => skipped.push(user.username.as_str().to_owned()),
            Err(e) => return Err(e).context("importing users"),
        }
    }
    println!("imported {created} user(s)");
    if !skipped.is_empty() {
        println!("skipped {} existing user(s), left unchanged: {}", skipped.len(), skipped.join(", "));
    }
    Ok(())
}

/// Refuses, before anything is written, an import with a name that looks
/// like another's (same UTS #39 skeleton, different key): a stored user's,
/// or another entry's. Entries whose key exists are skipped later, as before.
async fn refuse_lookalikes(store: &SharedStore, users: &[NewUser]) -> anyhow::Result<()> {
    let mut seen: BTreeMap<String, &Username> = BTreeMap::new();
    for user in users {
        let name = &user.username;
        let skeleton = name.key().skeleton();
        if let Some(other) = seen.get(&skeleton) {
            if other.key() != name.key() {
                bail!(
                    "users {:?} and {:?} look alike (same UTS #39 skeleton): keep one",
                    other.as_str(),
                    name.as_str()
                );
            }
            continue;
        }
        seen.insert(skeleton, name);
        if store.user_by_key(name.key()).await?.is_none() && store.skeleton_taken(name).await? {
            bail!("user {:?} looks like an existing user's or client's name (same UTS #39 skeleton)", name.as_str());
        }
    }
    Ok(())
}

/// The users of an import file's text (the `fake_users_db` shape), every
/// entry checked; nothing is written. Pure, so it is fuzzed (`fuzz/`).
///
/// # Errors
/// Text that is not that shape, or the first entry with a refused username
/// or a hash portcullis cannot verify.
pub fn parse_import(text: &str) -> anyhow::Result<Vec<NewUser>> {
    let entries: BTreeMap<String, ImportedUser> =
        serde_json::from_str(text).context("expected the fake_users_db shape")?;
    let mut users = Vec::with_capacity(entries.len());
    for (key, entry) in entries {
        let username = Username::parse(&entry.username).with_context(|| format!("entry {key:?}"))?;
        let line = line_of(text, &entry.hashed_password);
        let hash = StoredHash::new(entry.hashed_password);
        if let Some(why) = password::refusal(&hash) {
            // The hash itself is never printed.
            bail!(
                "entry {key:?} (user {:?}, line {line}): hashed_password refused: {why} \
                 (accepted: bcrypt $2a$/$2b$/$2y$ of cost 4 to {}, or argon2 within the caps in docs/security.md)",
                username.as_str(),
                password::MAX_BCRYPT_COST
            );
        }
        users.push(NewUser {
            username,
            email: clean(entry.email),
            full_name: clean(entry.full_name),
            scopes: Scopes::default(),
            disabled: entry.disabled,
            password_hash: hash,
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_is_parsed_and_checked_without_a_database() {
        let text = r#"{"johndoe": {"username": "johndoe", "full_name": " John Doe ", "email": "",
            "hashed_password": "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW", "disabled": true}}"#;
        let users = parse_import(text).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].username.as_str(), "johndoe");
        assert_eq!((users[0].full_name.as_deref(), users[0].email.as_deref()), (Some("John Doe"), None));
        assert!(users[0].disabled);
        let bad_hash = text.replace("$2b$12$", "$2b$31$");
        assert!(format!("{:#}", parse_import(&bad_hash).unwrap_err()).contains("line 2"));
        assert!(parse_import("[]").is_err());
        assert!(parse_import(&text.replace("\"johndoe\",", "\"john doe\",")).is_err());
    }
}
