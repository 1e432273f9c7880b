//! The command line as clap parses it. Every flag has a `PORTCULLIS_*`
//! environment twin; values left unset here may still come from the TOML
//! file, which [`crate::config`] merges in (flag > env > file > default).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

pub use crate::auth::signing::KeyAlgorithm;

/// portcullis: an OAuth2 password-grant authentication server.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, propagate_version = true)]
pub struct Cli {
    /// Settings every command shares.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command takes: where the database and the secrets are.
/// Secrets come from the environment only (a command line is visible to
/// every user of the machine), and `--help` never prints their values.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML file with settings (keys are the flag names with `_`).
    #[arg(long, env = "PORTCULLIS_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database URL: sqlite://FILE (default sqlite://portcullis.db) or postgres://…
    // The URL may hold a password: `--help` must not print the env value.
    #[arg(long, env = "PORTCULLIS_DATABASE_URL", global = true, value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// File holding the secret key (instead of PORTCULLIS_SECRET_KEY).
    #[arg(long, env = "PORTCULLIS_SECRET_KEY_FILE", global = true, value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// Access-token lifetime, e.g. 15m, 1h [default: 15m]; the key commands
    /// need it to tell verifying keys from retired ones.
    #[arg(long, env = "PORTCULLIS_ACCESS_TOKEN_TTL", global = true, value_name = "DURATION")]
    pub access_token_ttl: Option<String>,

    /// The secret key (HS256 key; seals signing keys without a master key).
    #[arg(long, env = "PORTCULLIS_SECRET_KEY", global = true, hide = true, hide_env_values = true)]
    pub secret_key: Option<SecretString>,

    /// Seals private signing keys instead of the secret key.
    #[arg(long, env = "PORTCULLIS_MASTER_KEY", global = true, hide = true, hide_env_values = true)]
    pub master_key: Option<SecretString>,

    /// File holding the master key.
    #[arg(long, env = "PORTCULLIS_MASTER_KEY_FILE", global = true, hide = true)]
    pub master_key_file: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Manage users in the database.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients (machine callers) in the database.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Create the database and apply pending migrations.
    Migrate,
    /// List or rotate signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Audit a deployment (the settings `serve` would run with, and its
    /// database) against the tutorials' common mistakes; exit 1 on a fail.
    Check(CheckArgs),
}

/// `portcullis check`: `serve`'s settings, and the output format.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The settings to audit, as `serve` takes them.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Print a JSON array of `{check, status, message}`.
    #[arg(long)]
    pub json: bool,
}

/// `portcullis keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show each signing key and its state.
    List,
    /// Make a new signing key; running servers switch to it within 5 seconds.
    Rotate {
        /// Algorithm of the new key [default: the current key's].
        #[arg(long, value_enum, conflicts_with = "use_secret")]
        algorithm: Option<KeyAlgorithm>,
        /// Sign with the configured secret itself (HS256), as the tutorials'
        /// resource servers expect; also how to switch to a new secret.
        #[arg(long)]
        use_secret: bool,
    },
}

/// `portcullis client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client and print its secret, once.
    Add {
        /// The client id (a username's rules; no user may have it).
        name: String,
        /// Space-separated scopes it may be granted.
        #[arg(long, default_value = "")]
        scopes: String,
        /// What it is, for people.
        #[arg(long)]
        description: Option<String>,
    },
    /// List clients (never their secrets).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Give a client a new secret and print it, once; the old one stops working.
    RotateSecret {
        /// The client id.
        name: String,
        /// Also end every token issued to it so far (a leaked secret).
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Disable a client: it cannot authenticate, its tokens stop working.
    Disable {
        /// The client id.
        name: String,
    },
    /// Enable a disabled client.
    Enable {
        /// The client id.
        name: String,
    },
    /// Delete a client; its tokens stop working.
    Delete {
        /// The client id.
        name: String,
    },
}

/// `portcullis token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Verify a token with the server's keys and print its claims, or why it is refused.
    Decode {
        /// The JWT.
        jwt: String,
    },
}

/// Output format of the server log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `portcullis serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, env = "PORTCULLIS_BIND", value_name = "ADDR")]
    pub bind: Option<SocketAddr>,

    /// Let anyone create an account with POST /users.
    #[arg(long, env = "PORTCULLIS_ALLOW_REGISTRATION", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub allow_registration: Option<bool>,

    /// Proxies (CIDRs) whose X-Forwarded-For names the client, e.g. 10.0.0.0/8,127.0.0.1/32.
    #[arg(long, env = "PORTCULLIS_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR,…")]
    pub trusted_proxies: Vec<String>,

    /// Client addresses (CIDRs) that may read GET /metrics [default: 127.0.0.0/8,::1/128].
    #[arg(long, env = "PORTCULLIS_METRICS_ALLOW", value_delimiter = ',', value_name = "CIDR,…")]
    pub metrics_allow: Vec<String>,

    /// Log format [default: text].
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// The `iss` of issued tokens: this server's public URL [default: http://BIND].
    #[arg(long, env = "PORTCULLIS_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,

    /// Put `aud` in tokens (repeat, or comma-separate, for several).
    #[arg(long, env = "PORTCULLIS_AUDIENCE", value_delimiter = ',', value_name = "AUD")]
    pub audience: Vec<String>,

    /// Refresh-token lifetime, e.g. 14d [default: 14d].
    #[arg(long, env = "PORTCULLIS_REFRESH_TOKEN_TTL", value_name = "DURATION")]
    pub refresh_token_ttl: Option<String>,

    /// A session (a login and its refreshes) ends this long after the login,
    /// however often it is refreshed, e.g. 30d [default: 30d].
    #[arg(long, env = "PORTCULLIS_SESSION_MAX_AGE", value_name = "DURATION")]
    pub session_max_age: Option<String>,

    /// Most database connections this instance opens [default: 10].
    #[arg(long, env = "PORTCULLIS_DATABASE_POOL_SIZE", value_name = "N")]
    pub database_pool_size: Option<u32>,

    /// How long a request waits for a database connection before answering
    /// 503, e.g. 5s [default: 5s].
    #[arg(long, env = "PORTCULLIS_DATABASE_TIMEOUT", value_name = "DURATION")]
    pub database_timeout: Option<String>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key); the
    /// files are re-read when they change.
    #[arg(long, env = "PORTCULLIS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PORTCULLIS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Most client connections open at once; past it a new connection is
    /// closed at once [default: 1024].
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most users whose standing token checks hold in memory (an entry is
    /// about 0.4 KiB) [default: 50000].
    #[arg(long, env = "PORTCULLIS_CACHE_USERS", value_name = "N")]
    pub cache_users: Option<usize>,

    /// Most sessions token checks hold in memory [default: 250000].
    #[arg(long, env = "PORTCULLIS_CACHE_SESSIONS", value_name = "N")]
    pub cache_sessions: Option<usize>,

    /// Algorithm of the first signing key of a new database [default: HS256];
    /// later changes go through `keys rotate --algorithm`.
    #[arg(long, env = "PORTCULLIS_ALGORITHM", value_enum)]
    pub algorithm: Option<KeyAlgorithm>,

    /// Password of the first `admin` on an empty database (never printed).
    #[arg(long, env = "PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", hide = true, hide_env_values = true)]
    pub bootstrap_admin_password: Option<SecretString>,
}

/// `portcullis user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        /// Username.
        name: String,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Full name.
        #[arg(long)]
        full_name: Option<String>,
        /// Space-separated scopes the user may be granted.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Also grant the `admin` scope.
        #[arg(long)]
        admin: bool,
        /// Read the password as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Print a JSON array of profiles.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password.
    Passwd {
        /// Username.
        name: String,
        /// Read the password as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: no login, tokens refused.
    Disable {
        /// Username.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Username.
        name: String,
    },
    /// Delete a user.
    Delete {
        /// Username.
        name: String,
    },
    /// Import users from the FastAPI tutorial's `fake_users_db` JSON.
    Import {
        /// The JSON file.
        file: PathBuf,
    },
}
