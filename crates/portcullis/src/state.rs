//! The state every handler shares, and the pieces extractors take from it.

use std::sync::Arc;

use axum::extract::FromRef;
use portcullis_verify::Verifier;

use crate::auth::keyring::Keyring;
use crate::auth::pool::HashPool;
use crate::auth::throttle::Throttle;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::SharedStore;

/// Settings handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `POST /users` is open.
    pub allow_registration: bool,
    /// Refresh-token lifetime in seconds.
    pub refresh_token_ttl: i64,
    /// Seconds after its login that a session ends, however often refreshed.
    pub session_max_age: i64,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Client addresses `GET /metrics` answers.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// Send `Strict-Transport-Security` (serving TLS).
    pub hsts: bool,
    /// Longest a request may take, body upload included (then `408`).
    pub request_timeout: std::time::Duration,
}

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Users, sessions, keys.
    pub store: SharedStore,
    /// Signs access tokens and holds the verifier that checks them.
    pub keyring: Keyring,
    /// Password hashing threads.
    pub hasher: HashPool,
    /// Failed-login counters.
    pub throttle: Throttle,
    /// The time: real, or moved by tests.
    pub clock: Clock,
    /// This server's Prometheus metrics.
    pub metrics: Metrics,
    /// Behaviour switches.
    pub settings: Arc<Settings>,
}

impl AppState {
    /// The verifier of this server's access tokens.
    pub fn verifier(&self) -> &Verifier {
        self.keyring.verifier()
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.keyring.verifier().clone()
    }
}
