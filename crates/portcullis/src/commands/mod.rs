//! What each subcommand does. `main` parses the command line and hands it
//! here; tests call the same functions. Settings are resolved once, here,
//! and handed down.

pub mod check;
pub mod client;
pub mod keys;
pub mod token;
pub mod user;

use anyhow::Context;

use serde_json::json;

use crate::cli::{Cli, Command, LogFormat};
use crate::clock::Clock;
use crate::config::{Deployment, FileConfig, ServeConfig};
use crate::output;
use crate::server::Server;
use crate::store::SharedStore;

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command failed on, with context for the user.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = FileConfig::read(cli.global.config.as_deref())?;
    let deployment = Deployment::resolve(&cli.global, &file)?;
    let clock = Clock::system();
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig::resolve(args, deployment, file)?;
            init_tracing(config.log_format, "info,sqlx=warn");
            let server = Server::build(&config).await?;
            let addr = server.local_addr()?;
            tracing::info!(%addr, "listening");
            // On stdout, so scripts (and tests using port 0) can read the address.
            let url = format!("{}://{addr}", server.scheme());
            output::announce(config.log_format, &format!("portcullis listening on {url}"), json!({ "url": url }));
            server.run().await
        }
        Command::User(command) => {
            init_tracing(LogFormat::Text, "warn");
            user::run(command, &open_store(&deployment).await?, clock.now()).await
        }
        Command::Client(command) => {
            init_tracing(LogFormat::Text, "warn");
            client::run(command, &open_store(&deployment).await?, clock.now()).await
        }
        Command::Keys(command) => {
            init_tracing(LogFormat::Text, "warn");
            let store = open_store(&deployment).await?;
            keys::run(command, &store, &deployment, clock.now()).await
        }
        Command::Token(command) => {
            init_tracing(LogFormat::Text, "warn");
            let store = open_store(&deployment).await?;
            token::run(command, &store, &deployment, clock.now()).await
        }
        Command::Check(args) => {
            init_tracing(LogFormat::Text, "error");
            let json = args.json;
            let config = ServeConfig::resolve(args.serve, deployment, file)?;
            let missing = crate::store::sqlite::file_of(&config.deployment.database_url).is_some_and(|f| !f.exists());
            let store = if missing { None } else { Some(open_store(&config.deployment).await?) };
            if check::print(&check::audit(&config, store.as_ref()).await, json) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Migrate => {
            init_tracing(LogFormat::Text, "warn");
            open_store(&deployment).await?;
            println!("database is up to date");
            Ok(())
        }
    }
}

/// Opens (and migrates) the deployment's database with default pool settings.
async fn open_store(deployment: &Deployment) -> anyhow::Result<SharedStore> {
    crate::store::open(&deployment.database_url, &Default::default()).await.context("opening database")
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
