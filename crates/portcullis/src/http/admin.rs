//! User administration under `/admin/users`; every route needs scope `admin`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::input::{ApiJson, ApiPath};
use super::shared::{Registration, nullable};
use crate::domain::{NewPassword, Scopes, UserKey, Username, parse_email, parse_full_name};
use crate::error::{ApiError, ApiResult};
use crate::profile::Profile;
use crate::state::AppState;
use crate::store::UserPatch;

/// The admin routes, behind a scope check.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .route_layer(state.verifier().require_scopes(["admin"]))
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Paging through users.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most this many users (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// Users in username order.
    users: Vec<Profile>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

pub(super) fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("no user named {name:?}"))
}

/// The key of a username in a path; a name no user can have is simply not found.
pub(super) fn key_in_path(name: &str) -> ApiResult<UserKey> {
    Username::lookup_key(name).ok_or_else(|| not_found(name))
}

/// Lists users, a page at a time.
#[utoipa::path(
    get, path = "/admin/users", tag = "admin", params(Page),
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, description = "Bad limit or cursor"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
    )
)]
#[instrument(skip_all)]
pub async fn list_users(
    State(state): State<AppState>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<UserPage>> {
    let Query(page) = page.map_err(|e| ApiError::BadRequest(format!("bad query: {}", e.body_text())))?;
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let after = match page.cursor {
        Some(cursor) => Some(
            B64.decode(&cursor)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|key| !key.contains('\0'))
                .map(UserKey::from_stored)
                .ok_or_else(|| ApiError::BadRequest("cursor is not one this server gave out".into()))?,
        ),
        None => None,
    };
    // One extra row tells whether there is a next page.
    let mut users = state.store.list_users(after.as_ref(), limit + 1).await?;
    let next_cursor = if users.len() > limit as usize {
        users.truncate(limit as usize);
        users.last().map(|u| B64.encode(u.username.key().as_str()))
    } else {
        None
    };
    Ok(Json(UserPage { users: users.iter().map(Profile::from).collect(), next_cursor }))
}

/// A user created by an admin: registration's fields plus scopes and state.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// 1 to 64 characters, no spaces or invisible or direction-changing
    /// characters; unique ignoring case and width, and not confusable with
    /// another user's name (same UTS #39 skeleton).
    #[schema(value_type = super::document::Username)]
    username: String,
    /// 8 characters to 1024 bytes, not a common password.
    #[schema(value_type = super::document::NewPassword)]
    password: String,
    /// Email address.
    #[serde(default)]
    #[schema(value_type = Option<super::document::Email>)]
    email: Option<String>,
    /// Full name.
    #[serde(default)]
    #[schema(value_type = Option<super::document::FullName>)]
    full_name: Option<String>,
    /// Scopes the user may be granted.
    #[serde(default)]
    #[schema(value_type = Vec<super::document::ScopeName>)]
    scopes: Vec<String>,
    /// Create disabled.
    #[serde(default)]
    disabled: bool,
}

/// Creates a user.
#[utoipa::path(
    post, path = "/admin/users", tag = "admin",
    security(("OAuth2PasswordBearer" = ["admin"])),
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created", body = Profile),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 409, description = "Username taken, or confusable with a user's"),
        (status = 422, description = "A field breaks a rule"),
    )
)]
#[instrument(skip_all)]
pub async fn create_user(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewUserRequest>,
) -> ApiResult<(StatusCode, Json<Profile>)> {
    let scopes = Scopes::from_names(&request.scopes)?;
    let registration = Registration {
        username: request.username,
        password: request.password,
        email: request.email,
        full_name: request.full_name,
    };
    let profile = registration.create(&state, scopes, request.disabled).await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

/// One user.
#[utoipa::path(
    get, path = "/admin/users/{username}", tag = "admin",
    params(("username" = String, Path, description = "Username (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 200, description = "The user", body = Profile),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such user"),
    )
)]
#[instrument(skip_all)]
pub async fn get_user(State(state): State<AppState>, ApiPath(username): ApiPath<String>) -> ApiResult<Json<Profile>> {
    let user = state.store.user_by_key(&key_in_path(&username)?).await?.ok_or_else(|| not_found(&username))?;
    Ok(Json(Profile::from(&user)))
}

/// Changes to a user; absent fields stay as they are. No `Debug`: it may
/// carry a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminPatch {
    /// New email, or null.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<super::document::Email>)]
    email: Option<Option<String>>,
    /// New full name, or null.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<super::document::FullName>)]
    full_name: Option<Option<String>>,
    /// New scopes (replaces them all).
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::document::ScopeName>>)]
    scopes: Option<Vec<String>>,
    /// Disable (ends the user's sessions) or enable.
    #[serde(default)]
    disabled: Option<bool>,
    /// New password (ends the user's sessions).
    #[serde(default)]
    #[schema(value_type = Option<super::document::NewPassword>)]
    password: Option<String>,
}

/// Changes a user. Disabling or setting a password ends their sessions and
/// denies their live access tokens.
#[utoipa::path(
    patch, path = "/admin/users/{username}", tag = "admin",
    params(("username" = String, Path, description = "Username (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    request_body = AdminPatch,
    responses(
        (status = 200, description = "The updated user", body = Profile),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such user"),
        (status = 409, description = "The change would leave no enabled user with scope admin"),
        (status = 422, description = "A field breaks a rule"),
    )
)]
#[instrument(skip_all)]
pub async fn update_user(
    State(state): State<AppState>,
    ApiPath(username): ApiPath<String>,
    ApiJson(change): ApiJson<AdminPatch>,
) -> ApiResult<Json<Profile>> {
    let password_hash = match change.password {
        Some(p) => {
            let p = NewPassword::parse(p).map_err(|e| ApiError::Unprocessable(format!("password: {e}")))?;
            Some(state.hasher.hash(p.expose().to_owned()).await?)
        }
        None => None,
    };
    let patch = UserPatch {
        email: change.email.map(parse_email).transpose()?,
        full_name: change.full_name.map(parse_full_name).transpose()?,
        scopes: change.scopes.map(Scopes::from_names).transpose()?,
        disabled: change.disabled,
        password_hash,
    };
    let now = state.clock.now();
    let key = key_in_path(&username)?;
    let before = state.store.user_by_key(&key).await?.ok_or_else(|| not_found(&username))?;
    let updated = state.store.update_user(&key, &patch, now).await?.ok_or_else(|| not_found(&username))?;
    // Live tokens carry the scopes of their login: when a scope is taken
    // away, end the sessions so no token keeps it.
    if before.scopes.iter().any(|s| !updated.scopes.contains(s)) {
        state.store.end_user_sessions(&key, now).await?;
    }
    Ok(Json(Profile::from(&updated)))
}

/// Deletes a user and their sessions.
#[utoipa::path(
    delete, path = "/admin/users/{username}", tag = "admin",
    params(("username" = String, Path, description = "Username (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such user"),
        (status = 409, description = "The user is the last enabled one with scope admin"),
    )
)]
#[instrument(skip_all)]
pub async fn delete_user(State(state): State<AppState>, ApiPath(username): ApiPath<String>) -> ApiResult<StatusCode> {
    if state.store.delete_user(&key_in_path(&username)?, state.clock.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&username))
    }
}
