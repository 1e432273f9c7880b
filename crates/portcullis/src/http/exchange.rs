//! Token exchange at `/token` (RFC 8693), for two things:
//! - a personal access token (`pcat_…`) for an ordinary short-lived access
//!   token, so resource servers only ever see JWTs and never look a PAT up;
//! - an access token for a narrower one: fewer scopes and/or one audience,
//!   never more, expiring no later than its subject.
//!
//! The new token keeps its subject's `sid` (the PAT's id, or the login's
//! session), so ending that session or PAT ends it too.

use axum::http::StatusCode;
use axum::response::Response;
use portcullis_verify::{Audience, TokenError};

use super::input::OAuthForm;
use super::token::{parse_scope, respond_access_only};
use crate::auth::clients::PAT_PREFIX;
use crate::auth::standing::authenticate_any;
use crate::auth::tokens::{Issue, client_of, secret_hash, session_of};
use crate::domain::Scopes;
use crate::error::{ApiError, ApiResult, OAuthCode};
use crate::state::AppState;
use crate::store::Client;

/// The `grant_type` of token exchange.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `subject_token_type` of a personal access token.
pub const PAT_TYPE: &str = "urn:portcullis:token-type:personal_access_token";
/// `subject_token_type` of an access token, and the `issued_token_type`.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Longest `audience` accepted.
const MAX_AUDIENCE: usize = 256;

/// What the subject token is.
enum Subject {
    PersonalAccessToken,
    AccessToken,
}

/// A token-exchange request, read from the form.
pub struct Exchange<'a> {
    subject_token: &'a str,
    subject: Subject,
    scope: Option<&'a str>,
    audience: Option<&'a str>,
}

fn invalid_target(description: impl Into<String>) -> ApiError {
    ApiError::oauth(StatusCode::BAD_REQUEST, OAuthCode::InvalidTarget, description)
}

fn invalid_grant(description: impl Into<String>) -> ApiError {
    ApiError::oauth(StatusCode::BAD_REQUEST, OAuthCode::InvalidGrant, description)
}

fn wider(what: &str, missing: &str) -> ApiError {
    ApiError::oauth(
        StatusCode::BAD_REQUEST,
        OAuthCode::InvalidScope,
        format!("scope {missing:?} is not within the {what}'s: an exchange can narrow scopes, never widen them"),
    )
}

impl<'a> Exchange<'a> {
    /// Reads the exchange's fields.
    ///
    /// # Errors
    /// `invalid_request` for a missing field, an unknown token type, or
    /// delegation (`actor_token`); `invalid_target` for `resource` or a
    /// malformed `audience`.
    pub fn from_form(form: &'a OAuthForm) -> ApiResult<Self> {
        let subject_token = form.require("subject_token")?;
        let subject = match form.require("subject_token_type")? {
            PAT_TYPE => Subject::PersonalAccessToken,
            ACCESS_TOKEN_TYPE => Subject::AccessToken,
            other => {
                return Err(ApiError::invalid_request(format!(
                    "unsupported subject_token_type {:?}: use \"{PAT_TYPE}\" or \"{ACCESS_TOKEN_TYPE}\"",
                    other.chars().take(80).collect::<String>()
                )));
            }
        };
        if form.get("requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
            return Err(ApiError::invalid_request(format!(
                "requested_token_type: only \"{ACCESS_TOKEN_TYPE}\" is issued"
            )));
        }
        if form.get("actor_token").is_some() || form.get("actor_token_type").is_some() {
            return Err(ApiError::invalid_request("delegation (actor_token) is not supported"));
        }
        if form.get("resource").is_some() {
            return Err(invalid_target("resource is not supported: name the token's audience with \"audience\""));
        }
        let audience = form.get("audience");
        if let Some(aud) = audience {
            if aud.len() > MAX_AUDIENCE || aud.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(invalid_target(format!(
                    "audience must be one name of at most {MAX_AUDIENCE} bytes, without spaces or control characters"
                )));
            }
        }
        Ok(Exchange { subject_token, subject, scope: form.get("scope"), audience })
    }

    /// Issues the new access token. `client` is the authenticated client,
    /// if any (a PAT exchanged by a client carries its `client_id`).
    ///
    /// # Errors
    /// `invalid_grant` for a subject token that is not active, `invalid_scope`
    /// for a wider scope, `invalid_target` for an audience not allowed.
    pub async fn run(self, state: &AppState, client: Option<&Client>) -> ApiResult<Response> {
        let requested = parse_scope(self.scope)?;
        let configured = &state.keyring.settings().audience;
        if let Some(aud) = self.audience {
            // The server's own checks require one of its audiences.
            if !configured.is_empty() && !configured.iter().any(|c| c == aud) {
                return Err(invalid_target(format!("audience {aud:?} is not one this server issues tokens for")));
            }
        }
        match self.subject {
            Subject::PersonalAccessToken => self.exchange_personal_token(state, client, &requested).await,
            Subject::AccessToken => self.exchange_access_token(state, &requested).await,
        }
    }

    async fn exchange_personal_token(
        &self,
        state: &AppState,
        client: Option<&Client>,
        requested: &Scopes,
    ) -> ApiResult<Response> {
        let now = state.clock.now();
        let inactive = || invalid_grant("the personal access token is invalid, expired or revoked");
        if !self.subject_token.starts_with(PAT_PREFIX) {
            return Err(invalid_grant(format!(
                "subject_token is not a personal access token (they start with {PAT_PREFIX})"
            )));
        }
        let pat =
            state.store.personal_token_by_hash(&secret_hash(self.subject_token), now).await?.ok_or_else(inactive)?;
        let user = state.store.user_by_key(&pat.user_key).await?.filter(|u| !u.disabled).ok_or_else(inactive)?;
        if let Some(missing) = requested.iter().find(|s| !pat.scopes.contains(s)) {
            return Err(wider("personal access token", missing));
        }
        // Never more than the owner holds now, whatever the PAT was given.
        let granted = pat.scopes.grant(requested).intersection(&user.scopes);
        if let Some(lost) = requested.iter().find(|s| !granted.contains(s)) {
            return Err(ApiError::oauth(
                StatusCode::BAD_REQUEST,
                OAuthCode::InvalidScope,
                format!("the token's user no longer holds scope {lost:?}"),
            ));
        }
        let issue = Issue {
            subject: user.username.as_str(),
            scope: &granted,
            sid: Some(&pat.id),
            client_id: client.map(|c| c.client_id.as_str()),
            audience: self.audience.map(|a| Audience::One(a.to_owned())),
            not_after: Some(pat.expires_at),
            exchanged: true,
        };
        Ok(respond_access_only(state, &issue, Some(ACCESS_TOKEN_TYPE)))
    }

    async fn exchange_access_token(&self, state: &AppState, requested: &Scopes) -> ApiResult<Response> {
        let now = state.clock.now();
        let claims = match authenticate_any(state.verifier(), &state.store, self.subject_token, now).await {
            Ok(claims) => claims,
            Err(e @ TokenError::Unavailable(_)) => return Err(e.into()),
            Err(e) => {
                return Err(invalid_grant(format!("subject_token is not an active access token: {}", reason(&e))));
            }
        };
        let held = Scopes::parse(&claims.scope).unwrap_or_default();
        if let Some(missing) = requested.iter().find(|s| !held.contains(s)) {
            return Err(wider("subject token", missing));
        }
        let audience = match (self.audience, &claims.aud) {
            (Some(aud), Some(had)) if !had.contains(aud) => {
                return Err(invalid_target(format!(
                    "audience {aud:?} is not among the subject token's: an exchange can narrow audiences, never widen them"
                )));
            }
            (Some(aud), _) => Some(Audience::One(aud.to_owned())),
            (None, had) => had.clone(),
        };
        let granted = held.grant(requested);
        let issue = Issue {
            subject: &claims.sub,
            scope: &granted,
            sid: session_of(&claims),
            client_id: client_of(&claims),
            audience,
            not_after: Some(claims.exp),
            exchanged: true,
        };
        Ok(respond_access_only(state, &issue, Some(ACCESS_TOKEN_TYPE)))
    }
}

/// A token refusal's reason, without the `invalid_token` wrapping.
fn reason(e: &TokenError) -> String {
    match e {
        TokenError::Invalid(why) => why.to_string(),
        other => other.to_string(),
    }
}
