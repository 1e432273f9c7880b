//! A user's own account: `GET/PATCH /users/me` (and the tutorial's alias
//! `GET /user/current/`), `POST /users/me/password`, and self-registration
//! `POST /users` when it is switched on.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_verify::{Authenticated, TokenError};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::ClientAddr;
use super::extract::ApiJson;
use crate::auth::password::Verdict;
use crate::domain::{NewPassword, Scopes, Username, parse_email, parse_full_name};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{NewUser, StoreError, User, UserPatch};

/// The account routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me))
        .routes(routes!(current_user))
        .routes(routes!(change_password))
        .routes(routes!(register))
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

/// `Some(None)` for an explicit `null`, `None` for an absent field.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn caller(state: &AppState, user: &Authenticated) -> ApiResult<User> {
    let found = state.store.user_by_key(&Username::key_of(user.subject())).await?;
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
pub async fn me(State(state): State<AppState>, user: Authenticated) -> ApiResult<Json<Profile>> {
    Ok(Json(Profile::from(&caller(&state, &user).await?)))
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

/// Fields a user may change on their own profile; `null` clears one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// New email, or null.
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    /// New full name, or null.
    #[serde(default, deserialize_with = "nullable")]
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
    let now = crate::clock::unix_now() as i64;
    let updated = state.store.update_user(&Username::key_of(user.subject()), &patch, now).await?;
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
    let account = caller(&state, &user).await?;
    let key = Username::key_of(&account.username);
    let now = crate::clock::unix_now() as i64;
    // A stolen access token must not become a way to guess the password.
    if let Some(wait) = state.throttle.attempt(&key, addr, now).await? {
        return Err(ApiError::Throttled(wait));
    }
    let verdict = state.hasher.verify(change.current_password, Some(account.password_hash.clone())).await?;
    if verdict == Verdict::Wrong {
        return Err(ApiError::BadRequest("current_password is incorrect".into()));
    }
    state.throttle.succeeded(&key, addr).await?;
    let new = NewPassword::parse(change.new_password)?;
    let hash = state.hasher.hash(new.expose().to_owned()).await?;
    let patch = UserPatch { password_hash: Some(hash), ..UserPatch::default() };
    state.store.update_user(&key, &patch, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// 1 to 64 characters, no spaces; unique ignoring case and width.
    pub username: String,
    /// 8 characters to 1024 bytes, not a common password.
    pub password: String,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Full name.
    #[serde(default)]
    pub full_name: Option<String>,
}

impl Registration {
    /// Parses and hashes into a user to store.
    ///
    /// # Errors
    /// `422` naming the field that breaks a rule; `503` when hashing is saturated.
    pub async fn into_new_user(self, state: &AppState, scopes: Scopes, disabled: bool) -> ApiResult<NewUser> {
        let username =
            Username::parse(&self.username).map_err(|e| ApiError::Unprocessable(format!("username: {e}")))?;
        let password =
            NewPassword::parse(self.password).map_err(|e| ApiError::Unprocessable(format!("password: {e}")))?;
        let email = parse_email(self.email)?;
        let full_name = parse_full_name(self.full_name)?;
        let password_hash = state.hasher.hash(password.expose().to_owned()).await?;
        Ok(NewUser { username, email, full_name, scopes, disabled, password_hash })
    }
}

/// Stores a new user, turning a taken name into `409`.
///
/// # Errors
/// `409` when the username is taken.
pub async fn insert(state: &AppState, user: &NewUser) -> ApiResult<User> {
    match state.store.insert_user(user, crate::clock::unix_now() as i64).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(ApiError::Conflict("username is already taken".into())),
        Err(e) => return Err(e.into()),
    }
    let stored = state.store.user_by_key(user.username.key()).await?;
    stored.ok_or_else(|| ApiError::NotFound("user vanished right after creation".into()))
}

/// Self-registration; answers `403` unless the server runs with
/// `--allow-registration`. New users hold no scopes.
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body = Registration,
    responses(
        (status = 201, description = "Created", body = Profile),
        (status = 403, description = "Registration is off"),
        (status = 409, description = "Username taken"),
        (status = 422, description = "A field breaks a rule"),
    )
)]
#[instrument(skip_all)]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(registration): ApiJson<Registration>,
) -> ApiResult<(StatusCode, Json<Profile>)> {
    if !state.settings.allow_registration {
        return Err(ApiError::Forbidden("registration is off on this server (see --allow-registration)".into()));
    }
    let user = registration.into_new_user(&state, Scopes::default(), false).await?;
    let stored = insert(&state, &user).await?;
    Ok((StatusCode::CREATED, Json(Profile::from(&stored))))
}
