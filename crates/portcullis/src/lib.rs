//! portcullis: an OAuth2 password-grant authentication server. The binary in
//! `main.rs` only parses the command line and calls into this library, which
//! the tests drive the same way.

// Authentication: hashing, the signing secret, token issuing.
pub mod auth;
// The command line as parsed by clap.
pub mod cli;
// The clock every layer reads the time from.
pub mod clock;
// What each subcommand does (`serve` included).
pub mod commands;
// Settings merged from flags, environment and file.
pub mod config;
// Input values parsed into valid types.
pub mod domain;
// The HTTP layer's error type.
pub mod error;
// Routes and layers.
pub mod http;
// Accepting connections, with timeouts and a bound.
pub mod listen;
// HTTPS: rustls, certificates re-read when they change.
pub mod tls;
// Prometheus metrics: names, labels, the recorder `GET /metrics` renders.
pub mod metrics;
// What the process prints on stdout (text or JSON).
pub mod output;
// A user's public profile (API and CLI).
pub mod profile;
// Starting the server.
pub mod server;
// Shared handler state.
pub mod state;
// Storage interface and back ends.
pub mod store;

pub use http::app;
