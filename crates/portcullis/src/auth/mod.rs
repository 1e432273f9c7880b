//! Authentication: password hashing and its pool, the signing secret, and
//! access-token issuing. Verification lives in `portcullis-verify`.

pub mod keyring;
pub mod keys;
pub mod password;
pub mod pool;
pub mod secret;
pub mod throttle;
pub mod tokens;
