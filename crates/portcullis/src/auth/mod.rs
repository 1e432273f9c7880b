//! Authentication: password hashing and its pool, the deployment's secrets,
//! the keyring that signs and verifies tokens, a token's standing, and
//! login throttling. The library `portcullis-verify` does the JWT checks.

pub mod clients;
pub mod keyring;
pub mod password;
pub mod pool;
pub mod secret_key;
pub mod signing;
pub mod standing;
pub mod throttle;
pub mod tokens;
