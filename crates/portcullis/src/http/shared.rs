//! Pieces several route modules use: the registration body (self-service
//! and admin-created users share it), `null`-aware optional fields, and
//! uncacheable responses.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::domain::{NewPassword, Scopes, Username, parse_email, parse_full_name};
use crate::error::{ApiError, ApiResult};
use crate::profile::Profile;
use crate::state::AppState;
use crate::store::{NewUser, StoreError};

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// 1 to 64 characters, no spaces or invisible or direction-changing
    /// characters; unique ignoring case and width, and not confusable with
    /// another user's name (same UTS #39 skeleton).
    #[schema(value_type = super::document::Username)]
    pub username: String,
    /// 8 characters to 1024 bytes, not a common password.
    #[schema(value_type = super::document::NewPassword)]
    pub password: String,
    /// Email address.
    #[serde(default)]
    #[schema(value_type = Option<super::document::Email>)]
    pub email: Option<String>,
    /// Full name.
    #[serde(default)]
    #[schema(value_type = Option<super::document::FullName>)]
    pub full_name: Option<String>,
}

impl Registration {
    /// Parses, hashes and stores the user. A taken name, or one confusable
    /// with a user's name (same UTS #39 skeleton), is refused before the
    /// password is hashed, so asking for `admin` again and again costs a
    /// query, not a hash.
    ///
    /// # Errors
    /// `422` naming the field that breaks a rule; `409` when the name is
    /// taken or looks like a user's; `503` when hashing is saturated.
    pub async fn create(self, state: &AppState, scopes: Scopes, disabled: bool) -> ApiResult<Profile> {
        let username =
            Username::parse(&self.username).map_err(|e| ApiError::Unprocessable(format!("username: {e}")))?;
        let password =
            NewPassword::parse(self.password).map_err(|e| ApiError::Unprocessable(format!("password: {e}")))?;
        let email = parse_email(self.email)?;
        let full_name = parse_full_name(self.full_name)?;
        if state.store.user_by_key(username.key()).await?.is_some()
            || state.store.client_by_key(username.key()).await?.is_some()
        {
            return Err(taken());
        }
        if state.store.skeleton_taken(&username).await? {
            return Err(StoreError::Confusable.into());
        }
        let password_hash = state.hasher.hash(password.expose().to_owned()).await?;
        let user = NewUser { username, email, full_name, scopes, disabled, password_hash };
        match state.store.insert_user(&user, state.clock.now()).await {
            Ok(stored) => Ok(Profile::from(&stored)),
            // Taken while we hashed (a lookalike taken meanwhile is
            // `Confusable`, a `409` too).
            Err(StoreError::Conflict) => Err(taken()),
            Err(e) => Err(e.into()),
        }
    }
}

fn taken() -> ApiError {
    ApiError::Conflict("username is already taken".into())
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Token responses must not be cached (RFC 6749 §5.1).
pub fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
