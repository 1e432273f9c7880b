//! A user as the world sees it: the JSON of `GET /users/me`, the admin API
//! and `portcullis user list --json`. Never the password hash.

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::User;

/// A user's public profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Profile {
    /// The username, as registered.
    pub username: String,
    /// Email address.
    pub email: Option<String>,
    /// Full name.
    pub full_name: Option<String>,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// Scopes the user may be granted.
    pub scopes: Vec<String>,
}

impl From<&User> for Profile {
    fn from(user: &User) -> Self {
        Profile {
            username: user.username.as_str().to_owned(),
            email: user.email.clone(),
            full_name: user.full_name.clone(),
            disabled: user.disabled,
            scopes: user.scopes.to_vec(),
        }
    }
}
