//! What each subcommand does. `main` parses the command line and hands it
//! here; tests call the same functions.

pub mod keys;
pub mod user;

use anyhow::Context;

use crate::cli::{Cli, Command, LogFormat};
use crate::config::{FileConfig, ServeConfig};
use crate::server::Server;

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command failed on, with context for the user.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig::resolve(args, cli.database_url, cli.secret_key_file, file)?;
            init_tracing(config.log_format, "info,sqlx=warn");
            let server = Server::build(&config).await?;
            let addr = server.local_addr()?;
            tracing::info!(%addr, "listening");
            // On stdout, so scripts (and tests using port 0) can read the address.
            println!("portcullis listening on http://{addr}");
            server.run().await
        }
        Command::User(command) => {
            init_tracing(LogFormat::Text, "warn");
            let store = crate::store::open(&file.database_url(cli.database_url), &Default::default())
                .await
                .context("opening database")?;
            user::run(command, &store).await
        }
        Command::Keys(command) => {
            init_tracing(LogFormat::Text, "warn");
            let context = keys::Context::open(&file, cli.database_url, cli.secret_key_file).await?;
            keys::run_keys(command, &context).await
        }
        Command::Token(command) => {
            init_tracing(LogFormat::Text, "warn");
            let context = keys::Context::open(&file, cli.database_url, cli.secret_key_file).await?;
            keys::run_token(command, &context).await
        }
        Command::Migrate => {
            init_tracing(LogFormat::Text, "warn");
            let url = file.database_url(cli.database_url);
            crate::store::open(&url, &Default::default()).await.context("opening database")?;
            println!("database is up to date");
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a person at a terminal, never in log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
