//! A user's own account: `GET/PATCH /users/me` (and the tutorial's alias
//! `GET /user/current/`), `POST /users/me/password`, and self-registration
//! `POST /users` when it is switched on.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_verify::{Authenticated, TokenError};
use serde::Deserialize;
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::ClientAddr;
use super::input::ApiJson;
use super::shared::{Registration, nullable};
use crate::auth::password::Verdict;
use crate::domain::{NewPassword, Scopes, UserKey, parse_email, parse_full_name};
use crate::error::{ApiError, ApiResult};
use crate::profile::Profile;
use crate::state::AppState;
use crate::store::UserPatch;

/// The account routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(current_user))
        .routes(routes!(me_with_slash))
        .routes(routes!(change_password))
        .routes(routes!(register))
}

async fn caller(state: &AppState, user: &Authenticated) -> ApiResult<std::sync::Arc<Profile>> {
    let found = state.store.profile(&UserKey::of(user.subject())).await?;
    // The token check passed a moment ago; the user may have been deleted since.
    found.ok_or_else(|| ApiError::Token(TokenError::invalid("user no longer exists")))
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
pub async fn me(State(state): State<AppState>, user: Authenticated) -> ApiResult<Response> {
    let profile = caller(&state, &user).await?;
    Ok(Json(&*profile).into_response())
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
pub async fn current_user(state: State<AppState>, user: Authenticated) -> ApiResult<Response> {
    me(state, user).await
}

/// Same as `/users/me` (the tutorials' `/users/me/`, with its slash).
#[utoipa::path(
    get, path = "/users/me/", tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = Profile),
        (status = 401, description = "Missing, invalid or expired token"),
    )
)]
pub async fn me_with_slash(state: State<AppState>, user: Authenticated) -> ApiResult<Response> {
    me(state, user).await
}

/// Fields a user may change on their own profile; `null` clears one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// New email, or null.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<super::document::Email>)]
    email: Option<Option<String>>,
    /// New full name, or null.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<super::document::FullName>)]
    full_name: Option<Option<String>>,
}

/// Changes the caller's own email or full name.
#[utoipa::path(
    patch, path = "/users/me", tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    request_body = ProfileChange,
    responses(
        (status = 200, description = "The updated profile", body = Profile),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 422, description = "A field is invalid"),
    )
)]
#[instrument(skip_all)]
pub async fn update_me(
    State(state): State<AppState>,
    user: Authenticated,
    ApiJson(change): ApiJson<ProfileChange>,
) -> ApiResult<Json<Profile>> {
    let patch = UserPatch {
        email: change.email.map(parse_email).transpose()?,
        full_name: change.full_name.map(parse_full_name).transpose()?,
        ..UserPatch::default()
    };
    let updated = state.store.update_user(&UserKey::of(user.subject()), &patch, state.clock.now()).await?;
    let updated = updated.ok_or_else(|| ApiError::Token(TokenError::invalid("user no longer exists")))?;
    Ok(Json(Profile::from(&updated)))
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    current_password: String,
    /// The new one: 8 characters to 1024 bytes, not a common password.
    #[schema(value_type = super::document::NewPassword)]
    new_password: String,
}

/// Changes the caller's password; ends all their sessions and denies their
/// live access tokens (this one included): log in again.
#[utoipa::path(
    post, path = "/users/me/password", tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; all sessions ended"),
        (status = 400, description = "The current password is wrong"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 422, description = "The new password breaks a rule"),
        (status = 429, description = "Too many wrong current passwords; see Retry-After"),
    )
)]
#[instrument(skip_all)]
pub async fn change_password(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    user: Authenticated,
    ApiJson(change): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    // The hash to check against, as stored now (not the cached profile).
    let account = state.store.user_by_key(&UserKey::of(user.subject())).await?;
    let account = account.ok_or_else(|| ApiError::Token(TokenError::invalid("user no longer exists")))?;
    let key = account.username.key();
    let now = state.clock.now();
    // A stolen access token must not become a way to guess the password.
    let attempt = state.throttle.login(key, addr.as_ref(), now).await?.map_err(ApiError::Throttled)?;
    let verdict = state.hasher.verify(change.current_password, Some(account.password_hash.clone())).await?;
    if verdict == Verdict::Wrong {
        attempt.failed(state.clock.now()).await?;
        return Err(ApiError::BadRequest("current_password is incorrect".into()));
    }
    attempt.succeeded().await?;
    let new = NewPassword::parse(change.new_password)?;
    let hash = state.hasher.hash(new.expose().to_owned()).await?;
    let patch = UserPatch { password_hash: Some(hash), ..UserPatch::default() };
    state.store.update_user(key, &patch, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Self-registration; answers `403` unless the server runs with
/// `--allow-registration`. New users hold no scopes.
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body = Registration,
    responses(
        (status = 201, description = "Created", body = Profile),
        (status = 403, description = "Registration is off"),
        (status = 409, description = "Username taken, or confusable with a user's"),
        (status = 422, description = "A field breaks a rule"),
        (status = 429, description = "Too many registrations from this address; see Retry-After"),
    )
)]
#[instrument(skip_all)]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(registration): ApiJson<Registration>,
) -> ApiResult<(StatusCode, Json<Profile>)> {
    if !state.settings.allow_registration {
        return Err(ApiError::Forbidden("registration is off on this server (see --allow-registration)".into()));
    }
    // Every attempt costs a hash or a query: one address gets a few.
    state.throttle.registration(addr.as_ref(), state.clock.now()).await?.map_err(ApiError::Throttled)?;
    let profile = registration.create(&state, Scopes::default(), false).await?;
    Ok((StatusCode::CREATED, Json(profile)))
}
