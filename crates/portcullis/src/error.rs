//! The HTTP layer's one error type. Every failure becomes a JSON body with
//! `detail` (what FastAPI clients read); token-endpoint errors also carry
//! RFC 6749 `error` and `error_description` (what OAuth clients read).
//! 5xx causes are logged here and never shown.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_verify::TokenError;
use serde_json::json;

use crate::auth::pool::Busy;
use crate::store::StoreError;

/// An RFC 6749 §5.2 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    /// Missing or malformed parameter.
    InvalidRequest,
    /// Bad credentials or refresh token.
    InvalidGrant,
    /// A grant type this server does not do.
    UnsupportedGrantType,
    /// A malformed scope.
    InvalidScope,
    /// Throttled: retry later.
    TemporarilyUnavailable,
    /// Client authentication failed (RFC 6749 §5.2).
    InvalidClient,
    /// The client may not do this (e.g. introspect without scope `introspect`).
    UnauthorizedClient,
    /// An audience the server will not issue a token for (RFC 8693 §2.2.2).
    InvalidTarget,
}

impl OAuthCode {
    fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::InvalidGrant => "invalid_grant",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthCode::InvalidScope => "invalid_scope",
            OAuthCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthCode::InvalidClient => "invalid_client",
            OAuthCode::UnauthorizedClient => "unauthorized_client",
            OAuthCode::InvalidTarget => "invalid_target",
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input, with what to fix.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed input that breaks a rule (e.g. a weak password).
    #[error("{0}")]
    Unprocessable(String),
    /// An extractor refused the request (body too large, wrong type…).
    #[error("{detail}")]
    Rejected {
        /// The status the rejection chose.
        status: StatusCode,
        /// What to fix.
        detail: String,
    },
    /// A token-endpoint error (RFC 6749 §5.2).
    #[error("{description}")]
    OAuth {
        /// Status: 400, or 401 for bad credentials.
        status: StatusCode,
        /// RFC 6749 code.
        code: OAuthCode,
        /// `detail` and `error_description`.
        description: String,
    },
    /// A bearer-token failure on a protected route.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Not allowed by configuration.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// A unique value is taken.
    #[error("{0}")]
    Conflict(String),
    /// Too many failed logins: retry after this many seconds.
    #[error("too many failed logins: try again in {0} seconds")]
    Throttled(u64),
    /// Password hashing is saturated: retry shortly.
    #[error("too many logins at once, retry shortly")]
    Busy,
    /// The database is unreachable or failing.
    #[error("database unavailable")]
    Database(#[source] StoreError),
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A token-endpoint error.
    pub fn oauth(status: StatusCode, code: OAuthCode, description: impl Into<String>) -> Self {
        ApiError::OAuth { status, code, description: description.into() }
    }

    /// Client authentication failed: `401 invalid_client`.
    pub fn invalid_client(description: impl Into<String>) -> Self {
        ApiError::oauth(StatusCode::UNAUTHORIZED, OAuthCode::InvalidClient, description)
    }

    /// An `invalid_request` from the token endpoint.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        ApiError::oauth(StatusCode::BAD_REQUEST, OAuthCode::InvalidRequest, description)
    }

    /// The one status match.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Rejected { status, .. } | ApiError::OAuth { status, .. } => *status,
            ApiError::Token(e) => e.status_code(),
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy | ApiError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LastAdmin => ApiError::Conflict(
                "this is the last enabled user with scope admin: give another user scope admin first".into(),
            ),
            // `409` like a taken name: the name is fine on its own, another
            // user's stands in its way. That user is not named.
            StoreError::Confusable => {
                ApiError::Conflict("username looks like an existing user's or client's name".into())
            }
            e => ApiError::Database(e),
        }
    }
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(e: crate::domain::Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

impl From<Busy> for ApiError {
    fn from(_: Busy) -> Self {
        ApiError::Busy
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        match self {
            ApiError::Token(e) => e.into_response(),
            ApiError::OAuth { code, description, .. } => {
                let body = json!({ "detail": description, "error": code.as_str(), "error_description": description });
                let mut response = (status, Json(body)).into_response();
                let headers = response.headers_mut();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if code == OAuthCode::InvalidClient {
                    // RFC 6749 §5.2: the scheme the client may authenticate with.
                    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                } else if status == StatusCode::UNAUTHORIZED {
                    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                response
            }
            ApiError::Throttled(wait) => {
                let description = self.to_string();
                let body = json!({
                    "detail": description,
                    "error": OAuthCode::TemporarilyUnavailable.as_str(),
                    "error_description": description,
                });
                let mut response = (status, Json(body)).into_response();
                if let Ok(value) = HeaderValue::from_str(&wait.max(1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            ApiError::Busy | ApiError::Database(_) => {
                if let ApiError::Database(e) = &self {
                    tracing::error!(error = %e, "database failure");
                }
                let mut response = (status, Json(json!({ "detail": self.to_string() }))).into_response();
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            other => (status, Json(json!({ "detail": other.to_string() }))).into_response(),
        }
    }
}
