//! Starting the server: open the database, load the secret, create the
//! first admin, then serve until SIGINT or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::auth::pool::HashPool;
use crate::auth::secret::{self, Origin};
use crate::auth::tokens::{SigningKey, TokenIssuer};
use crate::config::ServeConfig;
use crate::domain::{NewPassword, Scopes, Username};
use crate::state::{AppState, Settings};
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
        let store = store::open(&config.database_url)
            .await
            .with_context(|| format!("opening database {}", redact_url(&config.database_url)))?;
        let secret = load_secret(config)?;
        let hasher = HashPool::start(config.hash_threads, config.hash_queue);
        bootstrap_admin(&store, &hasher, config.bootstrap_admin_password.as_deref()).await?;
        let ttl = config.access_token_ttl.as_secs();
        let issuer = TokenIssuer::new(
            SigningKey::hs256(secret.expose_secret()),
            config.issuer.clone(),
            config.audience.clone(),
            ttl,
        );
        let settings = Settings {
            allow_registration: config.allow_registration,
        };
        let state = AppState::new(store, issuer, hasher, settings);
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("listening on {}", config.bind))?;
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
        let app = crate::http::app(self.state);
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
    }
}

fn load_secret(config: &ServeConfig) -> anyhow::Result<secrecy::SecretString> {
    let beside = SqliteStore::file_of(&config.database_url).map(|db| secret::path_beside(&db));
    if beside.is_none()
        && config.secret_key.is_none()
        && config.secret_key_file.is_none()
        && !config.database_url.starts_with("sqlite:")
    {
        anyhow::bail!(
            "this database has no file to keep a generated secret beside: set PORTCULLIS_SECRET_KEY or --secret-key-file (generate one with `openssl rand -hex 32`)"
        );
    }
    let (secret, origin) = secret::load(
        config.secret_key.as_deref(),
        config.secret_key_file.as_deref(),
        beside.as_deref(),
    )?;
    match origin {
        Origin::Environment => tracing::info!("signing secret from PORTCULLIS_SECRET_KEY"),
        Origin::File(path) => tracing::info!(file = %path.display(), "signing secret from file"),
        Origin::Generated(path) => tracing::warn!(
            file = %path.display(),
            "no secret key given: generated one and saved it (mode 0600); keep this file with the database"
        ),
        Origin::Ephemeral => tracing::warn!(
            "no secret key given: generated one for this in-memory database; tokens die with the process"
        ),
    }
    Ok(secret)
}

/// On an empty database, creates `admin` with scope `admin`, with the
/// password from the environment or a random one printed once.
async fn bootstrap_admin(
    store: &SharedStore,
    hasher: &HashPool,
    password: Option<&str>,
) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let (password, print) = match password {
        Some(p) => (
            NewPassword::parse(p.to_owned())
                .context("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD refused")?,
            false,
        ),
        None => (
            NewPassword::parse(random_password()).expect("a random password passes the rules"),
            true,
        ),
    };
    let hash = hasher
        .hash(password.expose().to_owned())
        .await
        .context("hashing the admin password")?;
    let admin = NewUser {
        username: Username::parse("admin").expect("admin is a valid username"),
        email: None,
        full_name: Some("Administrator".into()),
        scopes: Scopes::parse("admin").expect("admin is a valid scope"),
        disabled: false,
        password_hash: hash,
    };
    match store
        .insert_user(&admin, crate::clock::unix_now() as i64)
        .await
    {
        Ok(()) => {}
        // Another instance or the CLI created it in the meantime.
        Err(store::StoreError::Conflict) => return Ok(()),
        Err(e) => return Err(e).context("creating the admin user"),
    }
    if print {
        // The one deliberate secret in output: shown once, never logged.
        println!(
            "created user \"admin\" with password: {}",
            password.expose()
        );
        println!(
            "(shown only this once: store it, or set PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD next time)"
        );
    } else {
        tracing::info!(
            "created user \"admin\" with the password from PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD"
        );
    }
    Ok(())
}

/// 20 random characters from an unambiguous alphabet (~115 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
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
