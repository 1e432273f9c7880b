//! Personal access tokens: `POST/GET /users/me/tokens`,
//! `DELETE /users/me/tokens/{id}`, and their admin twins under
//! `/admin/users/{username}/tokens`.
//!
//! A PAT is never a bearer token: it is exchanged at `/token` (RFC 8693,
//! [`super::exchange`]) for a short-lived access token. It is shown once and
//! stored as a hash, its scopes are within what the token that made it
//! holds, and it always expires. Disabling or deleting its user ends it; a
//! password change does not (it is a credential of its own, made for
//! scripts that must not break when a person changes their password).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_verify::Authenticated;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::input::{ApiJson, ApiPath};
use crate::auth::clients::new_personal_token;
use crate::auth::tokens::{is_exchanged, secret_hash, session_of};
use crate::clock::UnixTime;
use crate::domain::{Scopes, UserKey};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::PersonalToken;

/// Shortest and longest lifetime of a PAT, in seconds: a minute, a year.
pub const LIFETIME: std::ops::RangeInclusive<i64> = 60..=366 * 24 * 3600;
/// Lifetime when `expires_in` is absent: 30 days.
pub const DEFAULT_LIFETIME: i64 = 30 * 24 * 3600;
/// Longest name, in characters.
pub const MAX_NAME: usize = 100;
/// Most live PATs one user may hold.
pub const MAX_PER_USER: usize = 100;

/// The PAT routes: the caller's own, and an admin's view of anyone's.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let admin = OpenApiRouter::new()
        .routes(routes!(list_user_tokens))
        .routes(routes!(revoke_user_token))
        .route_layer(state.verifier().require_scopes(["admin"]));
    OpenApiRouter::new().routes(routes!(list_my_tokens, create_token)).routes(routes!(revoke_my_token)).merge(admin)
}

/// A PAT as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    /// Its id (`DELETE …/tokens/{id}`).
    id: String,
    /// What its owner called it.
    name: String,
    /// The most it can be exchanged for.
    scopes: Vec<String>,
    /// When it was made (Unix seconds).
    created_at: UnixTime,
    /// When it stops working (Unix seconds).
    expires_at: UnixTime,
}

impl From<&PersonalToken> for TokenInfo {
    fn from(t: &PersonalToken) -> Self {
        TokenInfo {
            id: t.id.clone(),
            name: t.name.clone(),
            scopes: t.scopes.to_vec(),
            created_at: t.created_at,
            expires_at: t.expires_at,
        }
    }
}

/// A new PAT, with its secret shown this once.
#[derive(Serialize, ToSchema)]
pub struct NewToken {
    /// Its id.
    id: String,
    /// Its name.
    name: String,
    /// The token (`pcat_…`): keep it now, it is stored only as a hash.
    /// Exchange it at `/token` for an access token.
    token: String,
    /// Its scopes.
    scopes: Vec<String>,
    /// When it was made (Unix seconds).
    created_at: UnixTime,
    /// When it stops working (Unix seconds).
    expires_at: UnixTime,
}

/// A user's PATs.
#[derive(Serialize, ToSchema)]
pub struct TokenList {
    /// Newest first; expired ones until they are pruned.
    tokens: Vec<TokenInfo>,
}

/// What a new PAT is for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// A name for people (1 to 100 characters), e.g. the script using it.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Its scopes: within the scopes of the token making it.
    #[serde(default)]
    #[schema(value_type = Vec<super::document::ScopeName>)]
    scopes: Vec<String>,
    /// Seconds until it expires: 60 to 31622400 (366 days); default 30 days.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 31622400)]
    expires_in: Option<i64>,
}

fn parse_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!("name: 1 to {MAX_NAME} characters, without control characters")));
    }
    Ok(name.to_owned())
}

/// Makes a personal access token for the caller.
#[utoipa::path(
    post, path = "/users/me/tokens", tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Made; the token is shown this once", body = NewToken),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "Asked for scopes the calling token lacks, or called with a token from a PAT"),
        (status = 409, description = "The user holds the most live PATs allowed"),
        (status = 422, description = "A field breaks a rule"),
    )
)]
#[instrument(skip_all)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(request): ApiJson<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let name = parse_name(&request.name)?;
    let scopes = Scopes::from_names(&request.scopes)?;
    let expires_in = request.expires_in.unwrap_or(DEFAULT_LIFETIME);
    if !LIFETIME.contains(&expires_in) {
        return Err(ApiError::Unprocessable(format!(
            "expires_in: {} to {} seconds (a minute to 366 days)",
            LIFETIME.start(),
            LIFETIME.end()
        )));
    }
    let claims = caller.claims();
    // Never more than the token asking holds: a down-scoped token must not
    // mint itself a wider credential.
    if let Some(missing) = scopes.iter().find(|s| !claims.has_scope(s)) {
        return Err(ApiError::Forbidden(format!(
            "scope {missing:?} is not held by the token making this one: a PAT gets at most its maker's scopes"
        )));
    }
    // Nor may a token someone was handed (an exchanged one: narrowed for a
    // service, or from a PAT) turn itself into a lasting credential.
    if is_exchanged(claims) {
        return Err(ApiError::Forbidden(
            "a token made by token exchange cannot make personal access tokens: use a token from a login".into(),
        ));
    }
    let key = UserKey::of(&claims.sub);
    let live = state.store.personal_tokens(&key).await?;
    // A PAT must not be able to renew itself forever.
    if session_of(claims).is_some_and(|sid| live.iter().any(|t| t.id == sid)) {
        return Err(ApiError::Forbidden(
            "a token exchanged from a personal access token cannot make personal access tokens: log in".into(),
        ));
    }
    let now = state.clock.now();
    if live.iter().filter(|t| t.expires_at > now).count() >= MAX_PER_USER {
        return Err(ApiError::Conflict(format!(
            "this user holds {MAX_PER_USER} live personal access tokens: revoke some first"
        )));
    }
    let secret = new_personal_token();
    let token = PersonalToken {
        id: uuid::Uuid::new_v4().simple().to_string(),
        user_key: key,
        name,
        scopes,
        created_at: now,
        expires_at: now + expires_in,
    };
    if !state.store.insert_personal_token(&token, &secret_hash(&secret), now).await? {
        return Err(ApiError::Token(portcullis_verify::TokenError::invalid("user is disabled")));
    }
    let info = TokenInfo::from(&token);
    let body = NewToken {
        id: info.id,
        name: info.name,
        token: secret,
        scopes: info.scopes,
        created_at: info.created_at,
        expires_at: info.expires_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// The caller's personal access tokens, without their secrets.
#[utoipa::path(
    get, path = "/users/me/tokens", tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The caller's PATs", body = TokenList),
        (status = 401, description = "Missing, invalid or expired token"),
    )
)]
#[instrument(skip_all)]
pub async fn list_my_tokens(State(state): State<AppState>, caller: Authenticated) -> ApiResult<Json<TokenList>> {
    list(&state, &UserKey::of(caller.subject())).await
}

/// Revokes one of the caller's personal access tokens, and the access
/// tokens exchanged for it.
#[utoipa::path(
    delete, path = "/users/me/tokens/{id}", tag = "users",
    params(("id" = String, Path, description = "The PAT's id")),
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 404, description = "The caller has no such token"),
    )
)]
#[instrument(skip_all)]
pub async fn revoke_my_token(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    revoke(&state, &UserKey::of(caller.subject()), &id).await
}

/// A user's personal access tokens, without their secrets.
#[utoipa::path(
    get, path = "/admin/users/{username}/tokens", tag = "admin",
    params(("username" = String, Path, description = "Username (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 200, description = "The user's PATs", body = TokenList),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such user"),
    )
)]
#[instrument(skip_all)]
pub async fn list_user_tokens(
    State(state): State<AppState>,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<TokenList>> {
    list(&state, &existing_user(&state, &username).await?).await
}

/// Revokes one of a user's personal access tokens.
#[utoipa::path(
    delete, path = "/admin/users/{username}/tokens/{id}", tag = "admin",
    params(
        ("username" = String, Path, description = "Username (any case)"),
        ("id" = String, Path, description = "The PAT's id"),
    ),
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such user, or no such token of theirs"),
    )
)]
#[instrument(skip_all)]
pub async fn revoke_user_token(
    State(state): State<AppState>,
    ApiPath((username, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    revoke(&state, &existing_user(&state, &username).await?, &id).await
}

async fn existing_user(state: &AppState, username: &str) -> ApiResult<UserKey> {
    let key = super::admin::key_in_path(username)?;
    state.store.user_by_key(&key).await?.ok_or_else(|| super::admin::not_found(username))?;
    Ok(key)
}

async fn list(state: &AppState, key: &UserKey) -> ApiResult<Json<TokenList>> {
    let tokens = state.store.personal_tokens(key).await?;
    Ok(Json(TokenList { tokens: tokens.iter().map(TokenInfo::from).collect() }))
}

async fn revoke(state: &AppState, key: &UserKey, id: &str) -> ApiResult<StatusCode> {
    // Ids are 32 lowercase hex digits; anything else names no token.
    let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed && state.store.revoke_personal_token(key, id, state.clock.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no personal access token with id {id:?}")))
    }
}
