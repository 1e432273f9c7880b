//! `POST /token` and `POST /login`: the OAuth2 token endpoint (RFC 6749).
//!
//! The password grant as the FastAPI tutorials use it, hardened: an unknown
//! user costs one dummy hash like a wrong password, hashing runs on the
//! bounded pool, scopes are what was asked *and* held, and every login starts
//! a session whose refresh tokens rotate with reuse detection.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::ClientAddr;
use super::client_auth::{self, Public};
use super::input::OAuthForm;
use super::shared::no_store;
use crate::auth::password::Verdict;
use crate::auth::throttle::Origin;
use crate::auth::tokens::{Issue, new_refresh_token, secret_hash};
use crate::clock::UnixTime;
use crate::domain::{Scopes, UserKey, Username};
use crate::error::{ApiError, ApiResult, OAuthCode};
use crate::metrics::{self, LoginOutcome};
use crate::state::AppState;
use crate::store::{Client, Rotation, Session, User};

/// The token endpoint's routes. `/login` is the same handler (the
/// tutorials' clients post there); its OpenAPI entry is copied from
/// `/token` by [`document_login`], so the two cannot drift apart.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token)).route("/login", axum::routing::post(token))
}

/// Documents `/login` as the copy of `/token` it is.
pub fn document_login(doc: &mut utoipa::openapi::OpenApi) {
    let Some(mut item) = doc.paths.paths.get("/token").cloned() else { return };
    if let Some(operation) = item.post.as_mut() {
        operation.operation_id = Some("login".into());
        operation.summary = Some("Same as /token: the tutorials' clients post to /login".into());
    }
    doc.paths.paths.insert("/login".into(), item);
}

/// The form fields of a token request, for the OpenAPI document: one
/// grant's. Each field at most once; an empty value counts as absent.
/// Client authentication (`client_id` and `client_secret` here, or HTTP
/// Basic) is optional except for `client_credentials`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TokenForm {
    /// The password grant (RFC 6749 §4.3).
    Password {
        /// `password`, the default when absent.
        #[schema(value_type = PasswordGrantType, required = false)]
        grant_type: Option<String>,
        /// The username (any case or width).
        #[schema(min_length = 1)]
        username: String,
        /// The password.
        #[schema(min_length = 1)]
        password: String,
        /// Scopes to request; none: all the user holds.
        #[schema(value_type = super::document::ScopeList, required = false)]
        scope: Option<String>,
        /// Any other field is ignored (each field at most once, a string).
        #[serde(flatten)]
        other: std::collections::HashMap<String, String>,
    },
    /// The client_credentials grant (RFC 6749 §4.4): a client's own token.
    ClientCredentials {
        /// `client_credentials`.
        #[schema(value_type = ClientCredentialsGrantType)]
        grant_type: String,
        /// The client's id (or send it with the secret by HTTP Basic).
        #[schema(min_length = 1, required = false)]
        client_id: Option<String>,
        /// The client's secret (or by HTTP Basic).
        #[schema(min_length = 1, required = false)]
        client_secret: Option<String>,
        /// Scopes to request, all held by the client; none: all it holds.
        #[schema(value_type = super::document::ScopeList, required = false)]
        scope: Option<String>,
        /// Any other field is ignored (each field at most once, a string).
        #[serde(flatten)]
        other: std::collections::HashMap<String, String>,
    },
    /// Token exchange (RFC 8693): a personal access token for an access
    /// token, or an access token for a narrower one.
    TokenExchange {
        /// `urn:ietf:params:oauth:grant-type:token-exchange`.
        #[schema(value_type = TokenExchangeGrantType)]
        grant_type: String,
        /// A personal access token (`pcat_…`) or an access token.
        #[schema(min_length = 1)]
        subject_token: String,
        /// What `subject_token` is.
        #[schema(value_type = SubjectTokenType)]
        subject_token_type: String,
        /// Scopes to request, within the subject token's; none: all of them.
        #[schema(value_type = super::document::ScopeList, required = false)]
        scope: Option<String>,
        /// The one audience the new token is for.
        #[schema(min_length = 1, max_length = 256, required = false)]
        audience: Option<String>,
        /// Any other field is ignored (each field at most once, a string).
        #[serde(flatten)]
        other: std::collections::HashMap<String, String>,
    },
    /// The refresh_token grant (RFC 6749 §6).
    RefreshToken {
        /// `refresh_token`.
        #[schema(value_type = RefreshGrantType)]
        grant_type: String,
        /// A refresh token from an earlier token response.
        #[schema(min_length = 1)]
        refresh_token: String,
        /// Scopes to request, within the session's grant; none: all of it.
        #[schema(value_type = super::document::ScopeList, required = false)]
        scope: Option<String>,
        /// Any other field is ignored (each field at most once, a string).
        #[serde(flatten)]
        other: std::collections::HashMap<String, String>,
    },
}

/// `grant_type` of the password grant, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
enum PasswordGrantType {
    #[serde(rename = "password")]
    Password,
}

/// `grant_type` of the client_credentials grant, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
enum ClientCredentialsGrantType {
    #[serde(rename = "client_credentials")]
    ClientCredentials,
}

/// `grant_type` of token exchange, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
enum TokenExchangeGrantType {
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

/// The token types token exchange takes as `subject_token_type`.
#[derive(ToSchema)]
#[allow(dead_code)]
enum SubjectTokenType {
    #[serde(rename = "urn:portcullis:token-type:personal_access_token")]
    PersonalAccessToken,
    #[serde(rename = "urn:ietf:params:oauth:token-type:access_token")]
    AccessToken,
}

/// `grant_type` of the refresh_token grant, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
enum RefreshGrantType {
    #[serde(rename = "refresh_token")]
    RefreshToken,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT access token.
    access_token: String,
    /// Always `bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// Opaque; trade it at this endpoint for new tokens (each works once).
    /// Only the password and refresh_token grants give one.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// The scopes granted, space-separated.
    scope: String,
    /// Token exchange only: `urn:ietf:params:oauth:token-type:access_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

/// A token request, by grant type (RFC 6749 §4.3, §4.4, §6; RFC 8693).
enum Grant<'a> {
    Password { username: &'a str, password: &'a str, scope: Option<&'a str> },
    RefreshToken { refresh_token: &'a str, scope: Option<&'a str> },
    ClientCredentials { scope: Option<&'a str> },
    TokenExchange(super::exchange::Exchange<'a>),
}

impl<'a> Grant<'a> {
    fn from_form(form: &'a OAuthForm) -> ApiResult<Self> {
        match form.get("grant_type").unwrap_or("password") {
            "password" => Ok(Grant::Password {
                username: form.require("username")?,
                password: form.require("password")?,
                scope: form.get("scope"),
            }),
            "refresh_token" => {
                Ok(Grant::RefreshToken { refresh_token: form.require("refresh_token")?, scope: form.get("scope") })
            }
            "client_credentials" => Ok(Grant::ClientCredentials { scope: form.get("scope") }),
            super::exchange::GRANT_TYPE => Ok(Grant::TokenExchange(super::exchange::Exchange::from_form(form)?)),
            other => Err(ApiError::oauth(
                StatusCode::BAD_REQUEST,
                OAuthCode::UnsupportedGrantType,
                format!(
                    "unsupported grant_type {:?}: use \"password\", \"refresh_token\", \"client_credentials\" \
                     or \"{}\"",
                    truncate(other),
                    super::exchange::GRANT_TYPE
                ),
            )),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

pub(super) fn parse_scope(scope: Option<&str>) -> ApiResult<Scopes> {
    Scopes::parse(scope.unwrap_or_default())
        .map_err(|e| ApiError::oauth(StatusCode::BAD_REQUEST, OAuthCode::InvalidScope, e.0))
}

fn wrong_credentials() -> ApiError {
    ApiError::oauth(StatusCode::UNAUTHORIZED, OAuthCode::InvalidGrant, "Incorrect username or password")
}

fn wider_scope() -> ApiError {
    ApiError::oauth(
        StatusCode::BAD_REQUEST,
        OAuthCode::InvalidScope,
        "a refresh cannot grant scopes the session was not granted",
    )
}

fn bad_refresh_token() -> ApiError {
    ApiError::oauth(StatusCode::BAD_REQUEST, OAuthCode::InvalidGrant, "refresh token is invalid, expired or revoked")
}

/// The OAuth2 token endpoint: password, refresh_token, client_credentials
/// and token-exchange grants.
///
/// Client authentication (HTTP Basic or `client_id` + `client_secret` in
/// the form) is checked whenever it is sent, and required for
/// `client_credentials`. Swagger UI's Authorize sends `Authorization: Basic
/// Og==` (an empty id and secret) with the form: that is no client.
#[utoipa::path(
    post, path = "/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens issued", body = TokenResponse),
        (status = 400, description = "Malformed request, unsupported grant type, inactive user, scope not held, or bad refresh or subject token"),
        (status = 401, description = "Incorrect username or password (invalid_grant), or client authentication failed (invalid_client)"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 429, description = "Too many failed logins for this account or address; see Retry-After"),
        (status = 503, description = "Login hashing saturated; retry after Retry-After seconds"),
    )
)]
#[instrument(skip_all)]
pub async fn token(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form: OAuthForm,
) -> ApiResult<Response> {
    let grant = Grant::from_form(&form)?;
    let public = if matches!(grant, Grant::ClientCredentials { .. }) { Public::Refused } else { Public::Ignored };
    let client = client_auth::optional_client(&state, &headers, &form, addr.as_ref(), public).await?;
    let (result, grant) = match grant {
        Grant::Password { username, password, scope } => {
            let result = password_grant(&state, addr.as_ref(), username, password, scope, client.as_ref()).await;
            if let Some(outcome) = login_outcome(&result) {
                state.metrics.login(outcome);
            }
            (result, metrics::Grant::Password)
        }
        Grant::RefreshToken { refresh_token, scope } => {
            (refresh_grant(&state, refresh_token, scope, client.as_ref()).await, metrics::Grant::RefreshToken)
        }
        Grant::ClientCredentials { scope } => {
            let client = client.ok_or_else(|| {
                ApiError::invalid_client(
                    "client_credentials needs client authentication: HTTP Basic, or client_id and client_secret",
                )
            })?;
            (client_credentials_grant(&state, &client, scope), metrics::Grant::ClientCredentials)
        }
        Grant::TokenExchange(exchange) => (exchange.run(&state, client.as_ref()).await, metrics::Grant::TokenExchange),
    };
    if result.is_ok() {
        state.metrics.token_issued(grant);
    }
    result
}

/// RFC 6749 §4.4: a token for the client itself. `sub` and `client_id` are
/// its id (RFC 9068 §2.2), `sid` its token generation, so a rotation that
/// revokes, a disable or a delete ends it. No refresh token: the client
/// can always ask again.
fn client_credentials_grant(state: &AppState, client: &Client, scope: Option<&str>) -> ApiResult<Response> {
    let requested = parse_scope(scope)?;
    if let Some(missing) = requested.iter().find(|s| !client.scopes.contains(s)) {
        return Err(ApiError::oauth(
            StatusCode::BAD_REQUEST,
            OAuthCode::InvalidScope,
            format!("this client does not hold scope {missing:?}: ask for scopes it holds, or none for all of them"),
        ));
    }
    let granted = client.scopes.grant(&requested);
    let id = client.client_id.as_str();
    let issue = Issue {
        subject: id,
        scope: &granted,
        sid: Some(&client.generation),
        client_id: Some(id),
        audience: None,
        not_after: None,
        exchanged: false,
    };
    Ok(respond_access_only(state, &issue, None))
}

/// A token response without a refresh token (client_credentials, token
/// exchange).
pub(super) fn respond_access_only(state: &AppState, issue: &Issue<'_>, issued_type: Option<&'static str>) -> Response {
    let access = state.keyring.issue_for(issue, state.clock.now());
    let body = TokenResponse {
        access_token: access.jwt,
        token_type: "bearer",
        expires_in: access.expires_in,
        refresh_token: None,
        scope: issue.scope.to_string(),
        issued_token_type: issued_type,
    };
    no_store(Json(body))
}

/// How a password login ended, for metrics; `None` for one refused before
/// any credential was looked at (a malformed scope).
fn login_outcome(result: &ApiResult<Response>) -> Option<LoginOutcome> {
    Some(match result {
        Ok(_) => LoginOutcome::Success,
        Err(ApiError::Throttled(_)) => LoginOutcome::Throttled,
        Err(ApiError::Busy) => LoginOutcome::Shed,
        Err(ApiError::Database(_)) => LoginOutcome::Error,
        Err(ApiError::OAuth { status, .. }) if *status == StatusCode::UNAUTHORIZED => LoginOutcome::BadCredentials,
        // The one `invalid_grant` with a `400`: right password, disabled user.
        Err(ApiError::OAuth { code: OAuthCode::InvalidGrant, .. }) => LoginOutcome::Inactive,
        Err(_) => return None,
    })
}

async fn password_grant(
    state: &AppState,
    addr: Option<&Origin>,
    username: &str,
    password: &str,
    scope: Option<&str>,
    client: Option<&Client>,
) -> ApiResult<Response> {
    let requested = parse_scope(scope)?;
    // `None`: a name no user can have, which never reaches the database.
    let lookup = Username::lookup_key(username);
    let key = lookup.clone().unwrap_or_else(|| UserKey::of(username));
    // Asked before any hashing: a throttled guesser costs no hash. Unknown
    // names count too, so both answer the same way.
    let attempt = state.throttle.login(&key, addr, state.clock.now()).await?.map_err(ApiError::Throttled)?;
    let user = match lookup {
        Some(key) => state.store.user_by_key(&key).await?,
        None => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verdict = state.hasher.verify(password.to_owned(), stored).await?;
    let (Verdict::Right { rehash }, Some(user)) = (verdict, user) else {
        attempt.failed(state.clock.now()).await?;
        return Err(wrong_credentials());
    };
    attempt.succeeded().await?;
    if user.disabled {
        return Err(ApiError::oauth(StatusCode::BAD_REQUEST, OAuthCode::InvalidGrant, "Inactive user"));
    }
    let now = state.clock.now();
    let granted = user.scopes.grant(&requested);
    let session = Session {
        id: uuid::Uuid::new_v4().simple().to_string(),
        user_key: user.username.key().clone(),
        scope: granted.to_string(),
        client_id: client.map(|c| c.client_id.as_str().to_owned()),
    };
    let refresh = new_refresh_token();
    let expires_at = now + state.settings.refresh_token_ttl.min(state.settings.session_max_age);
    let refresh_hash = secret_hash(&refresh);
    let mut verified = user.password_hash.clone();
    while !state.store.create_session(&session, &verified, &user.scopes, &refresh_hash, expires_at, now).await? {
        // The user changed while we hashed: a password change, disable or
        // scope change refuses the login. But the upgrade of this very hash
        // to argon2id (by another login with the same password) must not
        // cost it: a new stored hash that takes the same password goes on.
        let current = state.store.user_by_key(user.username.key()).await?;
        let Some(current) = current.filter(|c| rehash && c.password_hash != verified) else {
            return Err(wrong_credentials());
        };
        let same = state.hasher.verify(password.to_owned(), Some(current.password_hash.clone())).await?;
        if !matches!(same, Verdict::Right { .. }) || current.disabled || current.scopes != user.scopes {
            return Err(wrong_credentials());
        }
        verified = current.password_hash;
    }
    // Only now: the session start above checks the hash it verified.
    if rehash {
        upgrade_hash_later(state, &user, password);
    }
    let client_id = client.map(|c| c.client_id.as_str());
    Ok(respond(state, user.username.as_str(), &granted, &session.id, client_id, refresh, now))
}

/// Trades a refresh token for new tokens (RFC 6749 §6). The old one is
/// retired; presenting it again revokes the whole session (reuse detection).
/// A session started through a client refreshes for that client only.
async fn refresh_grant(
    state: &AppState,
    refresh_token: &str,
    scope: Option<&str>,
    client: Option<&Client>,
) -> ApiResult<Response> {
    let requested = parse_scope(scope)?;
    let now = state.clock.now();
    // Refuse a wider scope before the token is used up: a client that gets
    // this error may retry with the same token.
    let hash = secret_hash(refresh_token);
    if let Some(info) = state.store.refresh_token_info(&hash, now).await? {
        // Checked before the token is used up, so the right client can
        // still use it. Keys, not spellings: ids ignore case and width.
        let issued_to = info.session.client_id.as_deref().map(crate::domain::UserKey::of);
        if issued_to.as_ref() != client.map(|c| c.client_id.key()) {
            return Err(ApiError::oauth(
                StatusCode::BAD_REQUEST,
                OAuthCode::InvalidGrant,
                "this refresh token was issued to another client: refresh with the client that logged in",
            ));
        }
        let session_scope = Scopes::parse(&info.session.scope).unwrap_or_default();
        if requested.iter().any(|s| !session_scope.contains(s)) {
            return Err(wider_scope());
        }
    }
    let fresh = new_refresh_token();
    let expires_at = now + state.settings.refresh_token_ttl;
    let max_age = state.settings.session_max_age;
    let rotation = state.store.rotate_refresh_token(&hash, &secret_hash(&fresh), expires_at, max_age, now).await?;
    let session = match rotation {
        Rotation::Rotated(session) => session,
        Rotation::Reused(_) => {
            state.metrics.refresh_reuse_detected();
            tracing::warn!("a used refresh token was presented again: its session is revoked");
            return Err(bad_refresh_token());
        }
        Rotation::Invalid => return Err(bad_refresh_token()),
    };
    let user = state.store.user_by_key(&session.user_key).await?.ok_or_else(bad_refresh_token)?;
    // Never more than the session was granted (a session granted nothing
    // stays so), nor than the user holds now.
    let granted = Scopes::parse(&session.scope).unwrap_or_default().grant(&requested);
    let granted = granted.intersection(&user.scopes);
    if requested.iter().any(|s| !granted.contains(s)) {
        return Err(wider_scope());
    }
    Ok(respond(state, user.username.as_str(), &granted, &session.id, session.client_id.as_deref(), fresh, now))
}

fn respond(
    state: &AppState,
    username: &str,
    granted: &Scopes,
    sid: &str,
    client_id: Option<&str>,
    refresh: String,
    now: UnixTime,
) -> Response {
    let issue = Issue {
        subject: username,
        scope: granted,
        sid: Some(sid),
        client_id,
        audience: None,
        not_after: None,
        exchanged: false,
    };
    let access = state.keyring.issue_for(&issue, now);
    let body = TokenResponse {
        access_token: access.jwt,
        token_type: "bearer",
        expires_in: access.expires_in,
        refresh_token: Some(refresh),
        scope: granted.to_string(),
        issued_token_type: None,
    };
    no_store(Json(body))
}

/// Replaces a bcrypt (or weaker argon2) hash by argon2id after a good login,
/// off the request path so the login is not slowed by a second hash.
fn upgrade_hash_later(state: &AppState, user: &User, password: &str) {
    let (store, hasher) = (state.store.clone(), state.hasher.clone());
    let (key, old, password) = (user.username.key().clone(), user.password_hash.clone(), password.to_owned());
    let clock = state.clock.clone();
    tokio::spawn(async move {
        let Ok(new) = hasher.hash(password).await else { return };
        match store.upgrade_password_hash(&key, &old, &new, clock.now()).await {
            Ok(true) => tracing::info!("password hash upgraded to argon2id"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not upgrade a password hash"),
        }
    });
}
