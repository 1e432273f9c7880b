//! Settings, merged from flags, `PORTCULLIS_*` variables and the TOML file
//! (in that order of precedence) into a validated [`ServeConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::Deserialize;

use crate::auth::throttle::ThrottleSettings;
use crate::cli::{KeyAlgorithm, LogFormat, ServeArgs};
use crate::store::PoolSettings;

/// The database used when none is named.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis.db";
/// The address used when none is named.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

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
    algorithm: Option<String>,
    database_pool_size: Option<u32>,
    database_timeout: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    trusted_proxies: Option<Vec<String>>,
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
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// The secret key file: flag or env first, then the file.
    pub fn secret_key_file(&self, from_cli: Option<PathBuf>) -> Option<PathBuf> {
        from_cli.or_else(|| self.secret_key_file.clone())
    }

    /// The access-token lifetime the file sets, if any.
    ///
    /// # Errors
    /// A value that does not parse.
    pub fn access_token_ttl(&self) -> anyhow::Result<Option<Duration>> {
        self.access_token_ttl.as_deref().map(parse_duration).transpose().context("access_token_ttl")
    }

    /// The database URL: flag or env first, then the file, then the default.
    pub fn database_url(&self, from_cli: Option<String>) -> String {
        from_cli.or_else(|| self.database_url.clone()).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listen address.
    pub bind: SocketAddr,
    /// Database URL.
    pub database_url: String,
    /// Whether `POST /users` is open.
    pub allow_registration: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// The secret from `PORTCULLIS_SECRET_KEY`, if set.
    pub secret_key: Option<SecretString>,
    /// File holding the secret.
    pub secret_key_file: Option<PathBuf>,
    /// Key that seals private signing keys, when not the secret.
    pub master_key: Option<SecretString>,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens (empty: none).
    pub audience: Vec<String>,
    /// Access-token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_token_ttl: Duration,
    /// Algorithm of the first signing key of a new database.
    pub algorithm: KeyAlgorithm,
    /// Database connection pool.
    pub pool: PoolSettings,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Login throttling limits.
    pub throttle: ThrottleSettings,
    /// Password of the first `admin`, from `PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD`.
    pub bootstrap_admin_password: Option<SecretString>,
    /// Password-hashing threads.
    pub hash_threads: usize,
    /// Logins that may wait for a hashing thread before `/token` answers 503.
    pub hash_queue: usize,
}

impl ServeConfig {
    /// Merges flags (with their env twins, already applied by clap), the
    /// file and the defaults.
    ///
    /// # Errors
    /// A value that does not parse, named with the setting it belongs to.
    pub fn resolve(
        args: ServeArgs,
        database_url: Option<String>,
        secret_key_file: Option<PathBuf>,
        file: FileConfig,
    ) -> anyhow::Result<Self> {
        let bind = match args.bind.or(file.bind) {
            Some(bind) => bind,
            None => DEFAULT_BIND.parse().expect("the default bind address parses"),
        };
        let ttl_text = args.access_token_ttl.or(file.access_token_ttl.clone());
        let access_token_ttl = match ttl_text {
            Some(text) => parse_duration(&text).context("access_token_ttl")?,
            None => Duration::from_secs(15 * 60),
        };
        if access_token_ttl < Duration::from_secs(10) || access_token_ttl > Duration::from_secs(24 * 3600) {
            bail!("access_token_ttl must be between 10s and 24h");
        }
        let refresh_token_ttl = match args.refresh_token_ttl.or(file.refresh_token_ttl.clone()) {
            Some(text) => parse_duration(&text).context("refresh_token_ttl")?,
            None => Duration::from_secs(14 * 86400),
        };
        if refresh_token_ttl < access_token_ttl {
            bail!("refresh_token_ttl must not be shorter than access_token_ttl");
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
        let trusted_proxies = proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("trusted_proxies: {p:?} is not an address or CIDR (e.g. 10.0.0.0/8)"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
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
        let audience = if args.audience.is_empty() { file.audience.clone().unwrap_or_default() } else { args.audience };
        let issuer = args
            .issuer
            .or(file.issuer.clone())
            .unwrap_or_else(|| format!("http://{bind}"))
            .trim_end_matches('/')
            .to_owned();
        Ok(ServeConfig {
            bind,
            database_url: file.database_url(database_url),
            allow_registration: args.allow_registration.or(file.allow_registration).unwrap_or(false),
            log_format: args.log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            secret_key: std::env::var("PORTCULLIS_SECRET_KEY").ok().filter(|s| !s.is_empty()).map(SecretString::from),
            secret_key_file: secret_key_file.or(file.secret_key_file.clone()),
            master_key: master_key_from_env()?,
            issuer,
            audience: audience.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
            access_token_ttl,
            refresh_token_ttl,
            algorithm,
            pool,
            trusted_proxies,
            throttle: ThrottleSettings::default(),
            bootstrap_admin_password: std::env::var("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD")
                .ok()
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
            // One thread per core: logins use the machine without starving
            // the async workers of more than their share.
            hash_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            hash_queue: 256,
        })
    }
}

/// The master key from `PORTCULLIS_MASTER_KEY` or the file named by
/// `PORTCULLIS_MASTER_KEY_FILE`, held to the same rules as the secret.
///
/// # Errors
/// An unreadable file or a weak key.
pub fn master_key_from_env() -> anyhow::Result<Option<SecretString>> {
    let value = match (std::env::var("PORTCULLIS_MASTER_KEY"), std::env::var("PORTCULLIS_MASTER_KEY_FILE")) {
        (Ok(key), _) if !key.is_empty() => key,
        (_, Ok(path)) if !path.is_empty() => {
            std::fs::read_to_string(&path).with_context(|| format!("reading master key file {path}"))?.trim().to_owned()
        }
        _ => return Ok(None),
    };
    if let Some(why) = crate::auth::secret::weakness(&value) {
        bail!("master key refused: {}", why.replace("secret key", "master key"));
    }
    Ok(Some(SecretString::from(value)))
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

    fn args() -> ServeArgs {
        ServeArgs {
            bind: None,
            allow_registration: None,
            trusted_proxies: vec![],
            log_format: None,
            issuer: None,
            audience: vec![],
            access_token_ttl: None,
            refresh_token_ttl: None,
            database_pool_size: None,
            database_timeout: None,
            algorithm: None,
        }
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let file: FileConfig = toml::from_str("bind = \"127.0.0.1:9000\"\naccess_token_ttl = \"30m\"").unwrap();
        let config = ServeConfig::resolve(
            ServeArgs { bind: Some("127.0.0.1:7000".parse().unwrap()), ..args() },
            None,
            None,
            file,
        )
        .unwrap();
        assert_eq!(config.bind.port(), 7000);
        assert_eq!(config.access_token_ttl, Duration::from_secs(1800));
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
    }

    #[test]
    fn lists_in_the_file_take_the_flag_form_or_an_array() {
        let one: FileConfig = toml::from_str("audience = \"a, b\"").unwrap();
        let many: FileConfig = toml::from_str("audience = [\"a\", \"b\"]").unwrap();
        assert_eq!(one.audience, Some(vec!["a".into(), "b".into()]));
        assert_eq!(one.audience, many.audience);
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
    fn the_issuer_defaults_to_the_bind_address() {
        let config = ServeConfig::resolve(args(), None, None, FileConfig::default()).unwrap();
        assert_eq!(config.issuer, "http://127.0.0.1:8000");
    }
}
