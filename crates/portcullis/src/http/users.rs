//! The caller's own profile: `GET /users/me` and the tutorial's alias
//! `GET /user/current/`.

use axum::Json;
use axum::extract::State;
use portcullis_verify::Authenticated;
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::Username;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::User;

/// The profile routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(current_user))
}

/// A user as the API shows it: never the password hash.
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
            username: user.username.clone(),
            email: user.email.clone(),
            full_name: user.full_name.clone(),
            disabled: user.disabled,
            scopes: user.scopes.to_vec(),
        }
    }
}

/// The caller's profile.
#[utoipa::path(
    get, path = "/users/me", tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = Profile),
        (status = 401, description = "Missing, invalid or expired token"),
    )
)]
#[instrument(skip_all)]
pub async fn me(State(state): State<AppState>, user: Authenticated) -> ApiResult<Json<Profile>> {
    let found = state
        .store
        .user_by_key(&Username::key_of(user.subject()))
        .await?;
    // The token check passed a moment ago; the user may have been deleted since.
    let found = found.ok_or_else(|| {
        ApiError::Token(portcullis_verify::TokenError::invalid(
            "user no longer exists",
        ))
    })?;
    Ok(Json(Profile::from(&found)))
}

/// Same as `/users/me` (a tutorial's route).
#[utoipa::path(
    get, path = "/user/current/", tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = Profile),
        (status = 401, description = "Missing, invalid or expired token"),
    )
)]
pub async fn current_user(state: State<AppState>, user: Authenticated) -> ApiResult<Json<Profile>> {
    me(state, user).await
}
