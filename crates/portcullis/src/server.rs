//! Starting the server: resolve the secrets, open the database, create the
//! first admin, open the keyring, then serve until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::auth::keyring::{self, Keyring};
use crate::auth::pool::HashPool;
use crate::auth::throttle::Throttle;
use crate::auth::tokens::TokenSettings;
use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::domain::{NewPassword, Scopes, Username};
use crate::listen::ConnectionLimits;
use crate::metrics::Metrics;
use crate::state::{AppState, Settings};
use crate::store::cached::CachedStore;
use crate::store::{self, NewUser, SharedStore};
use crate::tls::TlsFiles;

/// A server ready to accept connections.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    tls: Option<TlsFiles>,
    cache: Arc<CachedStore>,
}

impl Server {
    /// Opens everything `serve` needs and binds the socket, on the system
    /// clock.
    ///
    /// # Errors
    /// A database that cannot be opened, a refused secret, a taken address.
    pub async fn build(config: &ServeConfig) -> anyhow::Result<Self> {
        Server::build_with_clock(config, Clock::system()).await
    }

    /// [`Server::build`] on a given clock (tests move it forward).
    ///
    /// # Errors
    /// As [`Server::build`].
    pub async fn build_with_clock(config: &ServeConfig, clock: Clock) -> anyhow::Result<Self> {
        let deployment = &config.deployment;
        // Before the database is touched: a refused secret changes nothing.
        let secrets = deployment.secrets(true)?;
        let store = store::open(&deployment.database_url, &config.pool)
            .await
            .with_context(|| format!("opening database {}", redact_url(&deployment.database_url)))?;
        // Token checks from memory once `run` follows the change feed.
        let cache = Arc::new(CachedStore::new(store, config.cache));
        let store: SharedStore = cache.clone();
        let metrics = Metrics::new();
        let hasher = HashPool::start(config.hash_threads, config.hash_queue)
            .with_wait_histogram(metrics.hash_wait())
            .with_duration_histogram(metrics.hash_duration());
        hasher.set_legacy_bcrypt_cost(store.max_bcrypt_cost().await?);
        let admin_password = config.bootstrap_admin_password.as_ref().map(|s| s.expose_secret());
        bootstrap_admin(&store, &hasher, admin_password, config.log_format, clock.now()).await?;
        keyring::ensure_signing_key(&store, &secrets, config.algorithm, clock.now()).await?;
        // Kept in the database from its first start, so a restart on another
        // address, or another instance, issues and accepts the same `iss`.
        // A configured issuer wins, and is what a new database keeps.
        // Bound first, so a new database keeps the port really bound.
        let listener = TcpListener::bind(config.bind).await.with_context(|| format!("listening on {}", config.bind))?;
        let proposed = config
            .issuer
            .clone()
            .unwrap_or_else(|| config.default_issuer(listener.local_addr().unwrap_or(config.bind)));
        let kept = store.setting_or_init("issuer", &proposed).await?;
        let issuer = config.issuer.clone().unwrap_or(kept);
        let tokens =
            TokenSettings { issuer, audience: config.audience.clone(), access_ttl: deployment.access_ttl_secs() };
        let keyring = Keyring::open(store.clone(), secrets, tokens, clock.clone()).await?;
        let settings = Settings {
            allow_registration: config.allow_registration,
            refresh_token_ttl: config.refresh_token_ttl.as_secs() as i64,
            session_max_age: config.session_max_age.as_secs() as i64,
            trusted_proxies: config.trusted_proxies.clone(),
            metrics_allow: config.metrics_allow.clone(),
            request_timeout: config.connections.request_timeout,
            hsts: config.tls.is_some(),
        };
        let throttle = Throttle::new(store.clone(), config.throttle.clone());
        let state = AppState { store, keyring, hasher, throttle, clock, metrics, settings: Arc::new(settings) };
        if let Some(files) = &config.tls {
            // Fail at start, not at the first handshake.
            drop(crate::tls::acceptor(files)?);
        } else if !config.bind.ip().is_loopback() && config.trusted_proxies.is_empty() {
            tracing::warn!(
                bind = %config.bind,
                "serving plain HTTP on a non-loopback address with no --trusted-proxies: passwords and tokens \
                 cross the network in the clear; set --tls-cert/--tls-key, or put a TLS proxy in front and list it \
                 in --trusted-proxies"
            );
        }
        Ok(Server { listener, state, limits: config.connections.clone(), tls: config.tls.clone(), cache })
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The cache token checks are answered from.
    pub fn cache(&self) -> &Arc<CachedStore> {
        &self.cache
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
        let state = &self.state;
        tokio::spawn(self.cache.follow(state.clock.clone()));
        tokio::spawn(reload_keys(state.keyring.clone()));
        tokio::spawn(prune(state.clone()));
        tokio::spawn(watch_legacy_hashes(state.store.clone(), state.hasher.clone()));
        tokio::spawn(metrics_upkeep(state.metrics.clone()));
        let tls = match &self.tls {
            Some(files) => {
                let (acceptor, watch) = crate::tls::acceptor(files)?;
                tokio::spawn(watch);
                Some(acceptor)
            }
            None => None,
        };
        let app = crate::http::app(self.state);
        crate::listen::serve(self.listener, app, self.limits, tls, shutdown_signal()).await.context("serving HTTP")
    }
}

/// Picks up keys rotated by another process (the CLI, another instance).
async fn reload_keys(keyring: Keyring) {
    let mut tick = tokio::time::interval(keyring::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = keyring.refresh().await {
            tracing::warn!(error = format!("{e:#}"), "could not reload signing keys");
        }
    }
}

/// Keeps the deny list and session tables small: rows go once nothing they
/// protect can still be presented.
async fn prune(state: AppState) {
    let access_ttl = state.keyring.settings().access_ttl;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        tick.tick().await;
        // Sessions stay until their last access token has expired too.
        let now = state.clock.now();
        state.throttle.prune(now);
        match state.store.prune(now - access_ttl, now - state.throttle.window_secs()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned expired tokens and sessions"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}

/// Folds histogram samples into their buckets between scrapes.
async fn metrics_upkeep(metrics: Metrics) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        metrics.upkeep();
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

/// On an empty database, creates `admin` with scope `admin`, with the
/// password from the environment or a random one printed once.
async fn bootstrap_admin(
    store: &SharedStore,
    hasher: &HashPool,
    password: Option<&str>,
    format: crate::cli::LogFormat,
    now: crate::clock::UnixTime,
) -> anyhow::Result<()> {
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
    match store.insert_user(&admin, now).await {
        // Remembered (as a fingerprint of the hash) so `check` can tell
        // whether the first password was ever changed.
        Ok(_) => {
            store.setting_or_init(BOOTSTRAP_HASH_SETTING, &fingerprint(&admin.password_hash)).await?;
        }
        // Another instance or the CLI created it (or a lookalike, so there
        // is a user now) in the meantime.
        Err(store::StoreError::Conflict | store::StoreError::Confusable) if store.count_users().await? > 0 => {
            return Ok(());
        }
        // No user at all: a client holds the name (one namespace).
        Err(store::StoreError::Conflict | store::StoreError::Confusable) => anyhow::bail!(
            "the first user, \"admin\", cannot be created: a client has that name or one like it \
             (`portcullis client list`); delete or rename that client, then start again"
        ),
        Err(e) => return Err(e).context("creating the admin user"),
    }
    if print {
        // The one deliberate secret in output: shown once, never logged.
        let message = format!(
            "created user \"admin\" with password: {}\n(shown only this once: store it, or set \
             PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD next time)",
            password.expose()
        );
        let message = match format {
            crate::cli::LogFormat::Text => message,
            // One object: the note goes on the same line.
            crate::cli::LogFormat::Json => message.replace('\n', " "),
        };
        let fields = serde_json::json!({ "username": "admin" });
        crate::output::announce(format, &message, fields);
    } else {
        tracing::info!("created user \"admin\" with the password from PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD");
    }
    Ok(())
}

/// The setting that holds the fingerprint of the first admin's hash.
pub const BOOTSTRAP_HASH_SETTING: &str = "bootstrap_admin_hash";

/// SHA-256 of a stored hash, hex: tells whether a hash changed, reveals
/// nothing a hash would not.
pub fn fingerprint(hash: &crate::domain::StoredHash) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(hash.expose().as_bytes()))
}

/// 20 random characters from an unambiguous alphabet (~115 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// The URL without its password, for messages: the user-info part, and the
/// value of any query parameter that names a secret (`?password=`,
/// `sslpassword`, `secret`, `token`, `key`…), are replaced by `…`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &base[..scheme], &base[at + 1..]),
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let secret = |name: &str| {
            let name = name.to_ascii_lowercase();
            ["pass", "secret", "token", "key", "auth", "cred"].iter().any(|s| name.contains(s))
        };
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if secret(name) => format!("{name}=…"),
                _ if secret(pair) => "…".to_owned(),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_url_in_a_message_keeps_no_password() {
        for (url, shown) in [
            ("postgres://app:s3cret@db:5432/auth", "postgres://…@db:5432/auth"),
            (
                "postgres://db/auth?user=app&password=s3cret&sslmode=require",
                "postgres://db/auth?user=app&password=…&sslmode=require",
            ),
            ("postgres://db/auth?sslpassword=s3cret", "postgres://db/auth?sslpassword=…"),
            ("postgres://a:b@db/auth?PASSWORD=s3cret", "postgres://…@db/auth?PASSWORD=…"),
            ("sqlite://portcullis.db?mode=rwc", "sqlite://portcullis.db?mode=rwc"),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("s3cret"));
        }
    }
}
