//! Ending sessions and inspecting tokens: `POST /logout`, RFC 7009
//! revocation and RFC 7662 introspection.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_verify::{Authenticated, Claims, TokenError, bearer_token};
use serde_json::{Value, json};
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::ClientAddr;
use super::client_auth::{self, Public};
use super::input::OAuthForm;
use super::shared::no_store;
use crate::auth::clients::PAT_PREFIX;
use crate::auth::standing::authenticate_any;
use crate::auth::tokens::{client_of, is_client_token, is_exchanged, secret_hash, session_of};
use crate::error::{ApiError, ApiResult, OAuthCode};
use crate::state::AppState;

/// The session routes. Introspection checks its caller itself: a bearer
/// with scope `admin`, or a client holding scope `introspect`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(logout)).routes(routes!(revoke)).routes(routes!(introspect))
}

/// A token sent to revocation or introspection, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TokenParam {
    /// An access token (JWT) or a refresh token.
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` or `refresh_token`; a hint only.
    #[schema(value_type = String, required = false)]
    token_type_hint: Option<String>,
    /// Any other field is ignored (each field at most once, a string).
    #[serde(flatten)]
    other: std::collections::HashMap<String, String>,
}

/// The revocation answer: always `{}`, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Revoked {}

/// An introspection answer (RFC 7662 §2.2), for the OpenAPI document:
/// `{"active": false}`, or the token's claims.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Introspection {
    /// Whether the token is active; nothing else is said of one that is not.
    active: bool,
    /// `bearer` (an access token) or `refresh_token`.
    #[schema(required = false)]
    token_type: String,
    /// The user, or the client for a client's own token.
    #[schema(required = false)]
    sub: String,
    /// The user (not for a client's own token).
    #[schema(required = false)]
    username: String,
    /// The client the token was issued to, when there was one.
    #[schema(required = false)]
    client_id: String,
    /// Space-separated scopes.
    #[schema(required = false)]
    scope: String,
    #[schema(required = false)]
    exp: i64,
    #[schema(required = false)]
    iat: i64,
    /// Access tokens only.
    #[schema(required = false)]
    nbf: i64,
    /// Access tokens only.
    #[schema(required = false)]
    jti: String,
    #[schema(required = false)]
    iss: String,
    /// When the access token has one: a string or a list.
    #[schema(required = false, value_type = Value)]
    aud: String,
}

/// Ends the caller's session (its refresh tokens) and denies the access
/// token it was called with.
#[utoipa::path(
    post, path = "/logout", tag = "auth",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Missing, invalid or expired token"),
    )
)]
#[instrument(skip_all)]
pub async fn logout(State(state): State<AppState>, user: Authenticated) -> ApiResult<StatusCode> {
    let claims = user.claims();
    // An exchanged token (narrowed for a service, or from a PAT) ends only
    // itself: whoever was handed it must not end the login it came from.
    if let Some(sid) = session_of(claims).filter(|_| !is_exchanged(claims)) {
        state.store.end_session(sid, state.clock.now()).await?;
    }
    state.store.deny_token(&claims.jti, claims.exp, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Verifies a JWT's signature and lifetime against our keys (not its
/// standing: a revoked token may be revoked again).
fn our_access_token(state: &AppState, token: &str) -> Option<Claims> {
    state.verifier().verify(token, state.clock.now()).ok()
}

/// RFC 7009: revokes a refresh token (ends its session), an access token
/// (denied until it expires) or a personal access token. Holding the token
/// is the proof; client authentication is optional, and checked when sent.
/// Unknown tokens get `200` too, as the RFC says.
#[utoipa::path(
    post, path = "/token/revoke", tag = "auth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke", body = Revoked),
        (status = 400, description = "Malformed request"),
        (status = 401, description = "Client authentication was sent and failed"),
        (status = 429, description = "Too many failed client authentications from this address; see Retry-After"),
    )
)]
#[instrument(skip_all)]
pub async fn revoke(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form: OAuthForm,
) -> ApiResult<Response> {
    let token = form.require("token")?;
    client_auth::optional_client(&state, &headers, &form, addr.as_ref(), Public::Ignored).await?;
    let now = state.clock.now();
    if let Some(claims) = our_access_token(&state, token) {
        state.store.deny_token(&claims.jti, claims.exp, now).await?;
    } else if token.starts_with(PAT_PREFIX) {
        // A leaked PAT reported by whoever found it (a secret scanner).
        if let Some(pat) = state.store.personal_token_by_hash(&secret_hash(token), now).await? {
            state.store.revoke_personal_token(&pat.user_key, &pat.id, now).await?;
        }
    } else if let Some(info) = state.store.refresh_token_info(&secret_hash(token), now).await? {
        state.store.end_session(&info.session.id, now).await?;
    }
    Ok(no_store(Json(json!({}))))
}

/// Who may introspect: a client holding scope `introspect` (RFC 7662
/// §2.1), or a bearer with scope `admin`.
async fn allowed_to_introspect(
    state: &AppState,
    headers: &HeaderMap,
    form: &OAuthForm,
    addr: Option<&crate::auth::throttle::Origin>,
) -> ApiResult<()> {
    if let Some(client) = client_auth::optional_client(state, headers, form, addr, Public::Refused).await? {
        if client.scopes.contains("introspect") {
            return Ok(());
        }
        return Err(ApiError::oauth(
            StatusCode::FORBIDDEN,
            OAuthCode::UnauthorizedClient,
            "this client lacks scope introspect: give it that scope to introspect tokens",
        ));
    }
    let bearer = bearer_token(headers)?;
    let claims = state.verifier().authenticate(bearer, state.clock.now()).await?;
    claims.require_scopes(&["admin"])?;
    Ok(())
}

/// RFC 7662: whether a token is active, and its claims. Needs a bearer
/// with scope `admin`, or client authentication by a client holding scope
/// `introspect` (what a resource server uses to learn of revocations).
#[utoipa::path(
    post, path = "/token/introspect", tag = "auth",
    security(("OAuth2PasswordBearer" = ["admin"])),
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`{\"active\": false}` or the token's claims", body = Introspection),
        (status = 401, description = "Missing, invalid or expired token, or client authentication failed"),
        (status = 403, description = "The caller lacks scope admin, or the client lacks scope introspect"),
        (status = 429, description = "Too many failed client authentications from this address; see Retry-After"),
    )
)]
#[instrument(skip_all)]
pub async fn introspect(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form: OAuthForm,
) -> ApiResult<Response> {
    allowed_to_introspect(&state, &headers, &form, addr.as_ref()).await?;
    let token = form.require("token")?;
    let now = state.clock.now();
    // The full check, deny list and session (or client) included.
    let checked = authenticate_any(state.verifier(), &state.store, token, now).await;
    if let Err(e @ TokenError::Unavailable(_)) = checked {
        return Err(e.into());
    }
    if let Ok(claims) = checked {
        let mut body = json!({
            "active": true,
            "token_type": "bearer",
            "sub": claims.sub,
            "scope": claims.scope,
            "exp": claims.exp,
            "iat": claims.iat,
            "nbf": claims.nbf,
            "jti": claims.jti,
            "iss": claims.iss,
        });
        if !is_client_token(&claims) {
            body["username"] = claims.sub.clone().into();
        }
        if let Some(client_id) = client_of(&claims) {
            body["client_id"] = client_id.into();
        }
        if let Some(aud) = &claims.aud {
            body["aud"] = serde_json::to_value(aud).unwrap_or(Value::Null);
        }
        return Ok(no_store(Json(body)));
    }
    if let Some(info) = state.store.refresh_token_info(&secret_hash(token), now).await? {
        if info.active {
            let user = state.store.user_by_key(&info.session.user_key).await?;
            if let Some(user) = user {
                return Ok(no_store(Json(json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "sub": user.username.as_str(),
                    "username": user.username.as_str(),
                    "scope": info.session.scope,
                    "exp": info.expires_at,
                    "iat": info.created_at,
                    "iss": state.keyring.settings().issuer,
                }))));
            }
        }
    }
    Ok(no_store(Json(json!({ "active": false }))).into_response())
}
