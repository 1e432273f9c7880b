//! Settings, merged from flags, `PORTCULLIS_*` variables and the TOML file
//! (in that order of precedence) into a validated [`ServeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::auth::secret_key::{self, Secrets};
use crate::auth::throttle::ThrottleSettings;
use crate::cli::{GlobalArgs, KeyAlgorithm, LogFormat, ServeArgs};
use crate::listen::ConnectionLimits;
use crate::store::PoolSettings;

/// The database used when none is named.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis.db";
/// The address used when none is named.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// Who may read `GET /metrics` when no one is named: this machine.
pub const DEFAULT_METRICS_ALLOW: &[&str] = &["127.0.0.0/8", "::1/128"];

/// The TOML file: the flags' names with `_`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    database_url: Option<String>,
    bind: Option<SocketAddr>,
    allow_registration: Option<bool>,
    log_format: Option<LogFormat>,
    secret_key_file: Option<PathBuf>,
    issuer: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    audience: Option<Vec<String>>,
    access_token_ttl: Option<String>,
    refresh_token_ttl: Option<String>,
    session_max_age: Option<String>,
    algorithm: Option<String>,
    database_pool_size: Option<u32>,
    database_timeout: Option<String>,
    max_connections: Option<usize>,
    cache_users: Option<usize>,
    cache_sessions: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default, deserialize_with = "string_or_list")]
    trusted_proxies: Option<Vec<String>>,
    #[serde(default, deserialize_with = "string_or_list")]
    metrics_allow: Option<Vec<String>>,
}

/// A list in TOML may be written as the flag takes it, `"a,b"`, or as an
/// array, `["a", "b"]`.
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|value| match value {
        OneOrMany::One(text) => text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        OneOrMany::Many(list) => list,
    }))
}

impl FileConfig {
    /// Reads the file, or an empty config when there is none.
    ///
    /// # Errors
    /// An unreadable file, bad TOML or an unknown key, naming the file.
    pub fn read(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }
}

/// Where a deployment's database and secrets are: what `serve` and the key
/// commands share, resolved once.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Database URL.
    pub database_url: String,
    /// The secret from `PORTCULLIS_SECRET_KEY`, if set.
    pub secret_key: Option<SecretString>,
    /// File holding the secret.
    pub secret_key_file: Option<PathBuf>,
    /// Key that seals private signing keys, when not the secret (checked).
    pub master_key: Option<SecretString>,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
}

impl Deployment {
    /// Merges the global flags (with their env twins, applied by clap), the
    /// file and the defaults.
    ///
    /// # Errors
    /// A value that does not parse, or a weak master key.
    pub fn resolve(args: &GlobalArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let ttl_text = args.access_token_ttl.clone().or(file.access_token_ttl.clone());
        let access_token_ttl = match ttl_text {
            Some(text) => parse_duration(&text).context("access_token_ttl")?,
            None => Duration::from_secs(15 * 60),
        };
        if access_token_ttl < Duration::from_secs(10) || access_token_ttl > Duration::from_secs(24 * 3600) {
            bail!("access_token_ttl must be between 10s and 24h");
        }
        let given = |s: &Option<SecretString>| s.clone().filter(|s| !s.expose_secret().is_empty());
        Ok(Deployment {
            database_url: args
                .database_url
                .clone()
                .or_else(|| file.database_url.clone())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            secret_key: given(&args.secret_key),
            secret_key_file: args.secret_key_file.clone().or_else(|| file.secret_key_file.clone()),
            master_key: secret_key::master_key(given(&args.master_key).as_ref(), args.master_key_file.as_deref())?,
            access_token_ttl,
        })
    }

    /// The secret key and master key. Only a server's first start may
    /// generate a secret key (beside an SQLite database).
    ///
    /// # Errors
    /// A refused secret; or none found where none may be generated.
    pub fn secrets(&self, may_generate: bool) -> anyhow::Result<Secrets> {
        let secret = secret_key::resolve(
            &self.database_url,
            self.secret_key.as_ref(),
            self.secret_key_file.as_deref(),
            may_generate,
        )?;
        Ok(Secrets::new(secret, self.master_key.clone()))
    }

    /// The access-token lifetime in seconds.
    pub fn access_ttl_secs(&self) -> i64 {
        self.access_token_ttl.as_secs() as i64
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Database, secrets, access-token lifetime.
    pub deployment: Deployment,
    /// Listen address.
    pub bind: SocketAddr,
    /// Whether `POST /users` is open.
    pub allow_registration: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// `iss` of issued tokens, when configured; else the one the database
    /// keeps (see [`ServeConfig::default_issuer`]).
    pub issuer: Option<String>,
    /// `aud` of issued tokens (empty: none).
    pub audience: Vec<String>,
    /// Refresh-token lifetime.
    pub refresh_token_ttl: Duration,
    /// A session ends this long after its login, however often refreshed.
    pub session_max_age: Duration,
    /// Algorithm of the first signing key of a new database.
    pub algorithm: KeyAlgorithm,
    /// Database connection pool.
    pub pool: PoolSettings,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Client addresses (as throttling reads them) `GET /metrics` answers.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// Login throttling limits.
    pub throttle: ThrottleSettings,
    /// Password of the first `admin`, from `PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD`.
    pub bootstrap_admin_password: Option<SecretString>,
    /// Password-hashing threads.
    pub hash_threads: usize,
    /// Logins that may wait for a hashing thread before `/token` answers 503.
    pub hash_queue: usize,
    /// Connection timeouts and bound.
    pub connections: ConnectionLimits,
    /// How much the standing cache holds.
    pub cache: crate::store::cached::Capacity,
    /// Certificate and key to serve HTTPS with.
    pub tls: Option<crate::tls::TlsFiles>,
}

impl ServeConfig {
    /// The issuer a new database fixes when none is configured: the address
    /// this first start bound (`bound`: the real port when `--bind` asked
    /// for port 0), `https` when serving TLS.
    pub fn default_issuer(&self, bound: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{bound}")
    }

    /// Merges flags (with their env twins, already applied by clap), the
    /// file and the defaults.
    ///
    /// # Errors
    /// A value that does not parse, named with the setting it belongs to.
    pub fn resolve(args: ServeArgs, deployment: Deployment, file: FileConfig) -> anyhow::Result<Self> {
        let bind = match args.bind.or(file.bind) {
            Some(bind) => bind,
            None => DEFAULT_BIND.parse().expect("the default bind address parses"),
        };
        let refresh_token_ttl = match args.refresh_token_ttl.or(file.refresh_token_ttl.clone()) {
            Some(text) => parse_duration(&text).context("refresh_token_ttl")?,
            None => Duration::from_secs(14 * 86400),
        };
        if refresh_token_ttl < deployment.access_token_ttl {
            bail!("refresh_token_ttl must not be shorter than access_token_ttl");
        }
        let session_max_age = match args.session_max_age.or(file.session_max_age.clone()) {
            Some(text) => parse_duration(&text).context("session_max_age")?,
            None => Duration::from_secs(30 * 86400),
        };
        if session_max_age < deployment.access_token_ttl {
            bail!("session_max_age must not be shorter than access_token_ttl");
        }
        let algorithm = match (args.algorithm, file.algorithm.as_deref()) {
            (Some(a), _) => a,
            (None, Some(name)) => KeyAlgorithm::parse(name)
                .with_context(|| format!("algorithm {name:?}: use HS256, EdDSA, ES256 or RS256"))?,
            (None, None) => KeyAlgorithm::Hs256,
        };
        let proxies = if args.trusted_proxies.is_empty() {
            file.trusted_proxies.clone().unwrap_or_default()
        } else {
            args.trusted_proxies
        };
        let trusted_proxies = parse_networks("trusted_proxies", &proxies)?;
        let metrics_allow = if args.metrics_allow.is_empty() {
            file.metrics_allow.clone().unwrap_or_else(|| DEFAULT_METRICS_ALLOW.iter().map(|&n| n.to_owned()).collect())
        } else {
            args.metrics_allow
        };
        let metrics_allow = parse_networks("metrics_allow", &metrics_allow)?;
        let mut pool = PoolSettings::default();
        if let Some(size) = args.database_pool_size.or(file.database_pool_size) {
            if size == 0 {
                bail!("database_pool_size must be at least 1");
            }
            pool.max_connections = size;
        }
        if let Some(text) = args.database_timeout.or(file.database_timeout.clone()) {
            pool.acquire_timeout = parse_duration(&text).context("database_timeout")?;
        }
        let tls = match (args.tls_cert.or(file.tls_cert.clone()), args.tls_key.or(file.tls_key.clone())) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together: give both, or neither"),
        };
        let mut connections = ConnectionLimits::default();
        if let Some(max) = args.max_connections.or(file.max_connections) {
            if max == 0 {
                bail!("max_connections must be at least 1");
            }
            connections.max_connections = max;
        }
        let mut cache = crate::store::cached::Capacity::default();
        for (name, flag, file, slot) in [
            ("cache_users", args.cache_users, file.cache_users, &mut cache.users),
            ("cache_sessions", args.cache_sessions, file.cache_sessions, &mut cache.sessions),
        ] {
            if let Some(n) = flag.or(file) {
                if n == 0 {
                    bail!("{name} must be at least 1");
                }
                *slot = n;
            }
        }
        let audience = if args.audience.is_empty() { file.audience.clone().unwrap_or_default() } else { args.audience };
        let issuer = args.issuer.or(file.issuer.clone()).map(|i| i.trim_end_matches('/').to_owned());
        Ok(ServeConfig {
            deployment,
            bind,
            allow_registration: args.allow_registration.or(file.allow_registration).unwrap_or(false),
            log_format: args.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            issuer,
            audience: audience.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
            refresh_token_ttl,
            session_max_age,
            algorithm,
            pool,
            trusted_proxies,
            metrics_allow,
            throttle: ThrottleSettings::default(),
            bootstrap_admin_password: args.bootstrap_admin_password.filter(|s| !s.expose_secret().is_empty()),
            // One thread per core: logins use the machine without starving
            // the async workers of more than their share.
            hash_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            hash_queue: 256,
            connections,
            cache,
            tls,
        })
    }
}

/// Parses a list of CIDRs or plain addresses (blank items skipped), naming
/// `setting` and the item when one does not parse.
fn parse_networks(setting: &str, items: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    items
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| format!("{setting}: {p:?} is not an address or CIDR (e.g. 10.0.0.0/8)"))
        })
        .collect()
}

/// Parses `15m`, `1h 30m`, `14d`, or plain seconds.
///
/// # Errors
/// A message saying what a duration looks like.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| anyhow::anyhow!("invalid duration {text:?} (use e.g. 30m, 1h, 14d): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global() -> GlobalArgs {
        GlobalArgs {
            config: None,
            database_url: None,
            secret_key_file: None,
            access_token_ttl: None,
            secret_key: None,
            master_key: None,
            master_key_file: None,
        }
    }

    fn resolve(args: ServeArgs, global: GlobalArgs, file: FileConfig) -> anyhow::Result<ServeConfig> {
        ServeConfig::resolve(args, Deployment::resolve(&global, &file)?, file)
    }

    fn args() -> ServeArgs {
        ServeArgs {
            bind: None,
            allow_registration: None,
            trusted_proxies: vec![],
            metrics_allow: vec![],
            log_format: None,
            issuer: None,
            audience: vec![],
            refresh_token_ttl: None,
            session_max_age: None,
            database_pool_size: None,
            database_timeout: None,
            max_connections: None,
            cache_users: None,
            cache_sessions: None,
            tls_cert: None,
            tls_key: None,
            algorithm: None,
            bootstrap_admin_password: None,
        }
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let file: FileConfig = toml::from_str("bind = \"127.0.0.1:9000\"\naccess_token_ttl = \"30m\"").unwrap();
        let config =
            resolve(ServeArgs { bind: Some("127.0.0.1:7000".parse().unwrap()), ..args() }, global(), file).unwrap();
        assert_eq!(config.bind.port(), 7000);
        assert_eq!(config.deployment.access_token_ttl, Duration::from_secs(1800));
        assert_eq!(config.deployment.database_url, DEFAULT_DATABASE_URL);
    }

    #[test]
    fn lists_in_the_file_take_the_flag_form_or_an_array() {
        let one: FileConfig = toml::from_str("audience = \"a, b\"").unwrap();
        let many: FileConfig = toml::from_str("audience = [\"a\", \"b\"]").unwrap();
        assert_eq!(one.audience, Some(vec!["a".into(), "b".into()]));
        assert_eq!(one.audience, many.audience);
    }

    #[test]
    fn metrics_are_for_this_machine_unless_other_addresses_are_named() {
        let nets = |list: &[&str]| list.iter().map(|n| n.parse::<ipnet::IpNet>().unwrap()).collect::<Vec<_>>();
        let config = resolve(args(), global(), FileConfig::default()).unwrap();
        assert_eq!(config.metrics_allow, nets(&["127.0.0.0/8", "::1/128"]));
        let file: FileConfig = toml::from_str("metrics_allow = \"10.0.0.5, 192.168.0.0/16\"").unwrap();
        assert_eq!(resolve(args(), global(), file).unwrap().metrics_allow, nets(&["10.0.0.5/32", "192.168.0.0/16"]));
        let bad = ServeArgs { metrics_allow: vec!["prometheus.internal".into()], ..args() };
        assert!(resolve(bad, global(), FileConfig::default()).is_err());
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        assert!(toml::from_str::<FileConfig>("bnid = \"x\"").is_err());
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("14d").unwrap(), Duration::from_secs(14 * 86400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_issuer_a_new_database_fixes_is_the_bind_address() {
        let config = resolve(args(), global(), FileConfig::default()).unwrap();
        assert_eq!(config.issuer, None);
        assert_eq!(config.default_issuer(config.bind), "http://127.0.0.1:8000");
    }
}
