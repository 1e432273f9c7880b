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

/// [`Profile`]'s JSON written straight from a stored user, copying
/// nothing: what `GET /users/me` (a hot path) sends.
#[derive(Debug, Serialize)]
pub struct ProfileView<'a> {
    username: &'a str,
    email: Option<&'a str>,
    full_name: Option<&'a str>,
    disabled: bool,
    #[serde(serialize_with = "scope_list")]
    scopes: &'a crate::domain::Scopes,
}

fn scope_list<S: serde::Serializer>(scopes: &&crate::domain::Scopes, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(scopes.iter())
}

impl<'a> From<&'a User> for ProfileView<'a> {
    fn from(user: &'a User) -> Self {
        ProfileView {
            username: user.username.as_str(),
            email: user.email.as_deref(),
            full_name: user.full_name.as_deref(),
            disabled: user.disabled,
            scopes: &user.scopes,
        }
    }
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
