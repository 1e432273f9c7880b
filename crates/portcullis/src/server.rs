//! Starting the server: open the database, load the secret, create the
//! first admin, then serve until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::auth::keyring::{self, Keyring};
use crate::auth::keys::{Sealer, SigningKey};
use crate::auth::pool::HashPool;
use crate::auth::secret::{self, Origin};
use crate::auth::throttle::Throttle;
use crate::auth::tokens::TokenIssuer;
use crate::config::ServeConfig;
use crate::domain::{NewPassword, Scopes, Username};
use crate::state::{AppState, Settings, server_verifier};
use crate::store::sqlite::SqliteStore;
use crate::store::{self, NewUser, SharedStore};

/// A server ready to accept connections.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Opens everything `serve` needs and binds the socket.
    ///
    /// # Errors
    /// A database that cannot be opened, a refused secret, a taken address.
    pub async fn build(config: &ServeConfig) -> anyhow::Result<Self> {
        let secret = load_secret(
            &config.database_url,
            config.secret_key.as_ref().map(|s| s.expose_secret()),
            config.secret_key_file.as_deref(),
            true,
        )?;
        let store = store::open(&config.database_url, &config.pool)
            .await
            .with_context(|| format!("opening database {}", redact_url(&config.database_url)))?;
        let hasher = HashPool::start(config.hash_threads, config.hash_queue);
        hasher.set_legacy_bcrypt_cost(store.max_bcrypt_cost().await?);
        bootstrap_admin(&store, &hasher, config.bootstrap_admin_password.as_ref().map(|s| s.expose_secret())).await?;
        let now = crate::clock::unix_now() as i64;
        let master_key = config.master_key.as_ref().map(|k| k.expose_secret());
        let sealer = Sealer::for_deployment(secret.expose_secret(), master_key);
        keyring::ensure_signing_key(&store, secret.expose_secret(), &sealer, config.algorithm, now).await?;
        let issuer = TokenIssuer::new(
            // Replaced by the active key as soon as the keyring opens.
            Arc::new(SigningKey::from_secret(secret.expose_secret())),
            config.issuer.clone(),
            config.audience.clone(),
            config.access_token_ttl.as_secs(),
        );
        let verifier = server_verifier(&store, &issuer);
        let keyring = Keyring::open(store.clone(), secret, sealer, issuer.clone(), verifier.clone(), now).await?;
        let settings = Settings {
            allow_registration: config.allow_registration,
            refresh_token_ttl: config.refresh_token_ttl.as_secs(),
            trusted_proxies: config.trusted_proxies.clone(),
        };
        let throttle = Throttle::new(store.clone(), config.throttle.clone());
        let state = AppState { store, verifier, issuer, keyring, hasher, throttle, settings: Arc::new(settings) };
        let listener = TcpListener::bind(config.bind).await.with_context(|| format!("listening on {}", config.bind))?;
        Ok(Server { listener, state })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state handlers share (tests reach the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until a shutdown signal, then finishes requests in flight.
    ///
    /// # Errors
    /// An I/O error of the listener.
    pub async fn run(self) -> anyhow::Result<()> {
        tokio::spawn(reload_keys(self.state.keyring.clone()));
        tokio::spawn(prune(self.state.store.clone(), self.state.issuer.ttl_secs(), self.state.throttle.window_secs()));
        tokio::spawn(watch_legacy_hashes(self.state.store.clone(), self.state.hasher.clone()));
        let app = crate::http::app(self.state);
        axum::serve(self.listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")
    }
}

/// Picks up keys rotated by another process (the CLI, another instance).
async fn reload_keys(keyring: Keyring) {
    let mut tick = tokio::time::interval(keyring::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = keyring.refresh(crate::clock::unix_now() as i64).await {
            tracing::warn!(error = format!("{e:#}"), "could not reload signing keys");
        }
    }
}

/// Keeps the deny list and session tables small: rows go once nothing they
/// protect can still be presented.
async fn prune(store: SharedStore, access_ttl: u64, throttle_window: i64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tick.tick().await;
        // Sessions stay until their last access token has expired too.
        let now = crate::clock::unix_now() as i64;
        match store.prune(now - access_ttl as i64, now - throttle_window).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned expired tokens and sessions"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}

/// Keeps the hash pool's timing padding in step with the bcrypt hashes left
/// (an import adds some, good logins replace them).
async fn watch_legacy_hashes(store: SharedStore, hasher: HashPool) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        match store.max_bcrypt_cost().await {
            Ok(cost) => hasher.set_legacy_bcrypt_cost(cost),
            Err(e) => tracing::warn!(error = %e, "could not count legacy password hashes"),
        }
    }
}

/// Finds the secret for a database: the environment, a file, or the file
/// beside an SQLite database (generated there on a server's first start).
///
/// # Errors
/// A refused secret; or none found where none may be generated.
pub fn load_secret(
    database_url: &str,
    from_env: Option<&str>,
    file: Option<&Path>,
    may_generate: bool,
) -> anyhow::Result<SecretString> {
    let beside = SqliteStore::file_of(database_url).map(|db| secret::path_beside(&db));
    if from_env.is_none() && file.is_none() {
        match &beside {
            None if database_url.starts_with("sqlite:") && may_generate => {}
            None => anyhow::bail!(
                "this database has no file to keep a secret beside: set PORTCULLIS_SECRET_KEY or --secret-key-file \
                 (generate one with `openssl rand -hex 32`)"
            ),
            Some(path) if !may_generate && !path.exists() => anyhow::bail!(
                "no secret key: set PORTCULLIS_SECRET_KEY or --secret-key-file, or start the server once to generate {}",
                path.display()
            ),
            Some(_) => {}
        }
    }
    let (secret, origin) = secret::load(from_env, file, beside.as_deref())?;
    match origin {
        Origin::Environment => tracing::info!("signing secret from PORTCULLIS_SECRET_KEY"),
        Origin::File(path) => tracing::info!(file = %path.display(), "signing secret from file"),
        Origin::Generated(path) => tracing::warn!(
            file = %path.display(),
            "no secret key given: generated one and saved it (mode 0600); keep this file with the database"
        ),
        Origin::Ephemeral => {
            tracing::warn!(
                "no secret key given: generated one for this in-memory database; tokens die with the process"
            )
        }
    }
    Ok(secret)
}

/// On an empty database, creates `admin` with scope `admin`, with the
/// password from the environment or a random one printed once.
async fn bootstrap_admin(store: &SharedStore, hasher: &HashPool, password: Option<&str>) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let (password, print) = match password {
        Some(p) => (NewPassword::parse(p.to_owned()).context("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD refused")?, false),
        None => (NewPassword::parse(random_password()).expect("a random password passes the rules"), true),
    };
    let hash = hasher.hash(password.expose().to_owned()).await.context("hashing the admin password")?;
    let admin = NewUser {
        username: Username::parse("admin").expect("admin is a valid username"),
        email: None,
        full_name: Some("Administrator".into()),
        scopes: Scopes::parse("admin").expect("admin is a valid scope"),
        disabled: false,
        password_hash: hash,
    };
    match store.insert_user(&admin, crate::clock::unix_now() as i64).await {
        Ok(()) => {}
        // Another instance or the CLI created it in the meantime.
        Err(store::StoreError::Conflict) => return Ok(()),
        Err(e) => return Err(e).context("creating the admin user"),
    }
    if print {
        // The one deliberate secret in output: shown once, never logged.
        println!("created user \"admin\" with password: {}", password.expose());
        println!("(shown only this once: store it, or set PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD next time)");
    } else {
        tracing::info!("created user \"admin\" with the password from PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD");
    }
    Ok(())
}

/// 20 random characters from an unambiguous alphabet (~115 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
