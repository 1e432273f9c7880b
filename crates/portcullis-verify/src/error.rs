//! Why a request was not let through, and the RFC 6750 answer for each case.
//!
//! The server's own protected routes and every service using this crate
//! answer with exactly these responses, so clients see one behaviour.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A bearer token was missing, invalid or lacked a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` header at all.
    #[error("not authenticated")]
    Missing,
    /// The token is malformed, badly signed, expired, revoked, or its user is
    /// gone. The text is safe to show: it never contains the token.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token is valid but lacks these space-separated scopes.
    #[error("insufficient scope: {0}")]
    InsufficientScope(String),
    /// The verifier could not reach what it needs (e.g. a key set) to decide.
    #[error("token verification unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// An [`TokenError::Invalid`] with a reason.
    pub fn invalid(reason: impl Into<String>) -> Self {
        TokenError::Invalid(reason.into())
    }

    /// The HTTP status this error answers with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            TokenError::Missing | TokenError::Invalid(_) => StatusCode::UNAUTHORIZED,
            TokenError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            TokenError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), if this error carries one.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            TokenError::Missing => Some("Bearer".to_owned()),
            TokenError::Invalid(reason) => {
                Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", quoted(reason)))
            }
            TokenError::InsufficientScope(scope) => {
                Some(format!("Bearer error=\"insufficient_scope\", scope=\"{}\"", quoted(scope)))
            }
            TokenError::Unavailable(_) => None,
        }
    }

    /// The `detail` text of the JSON body (the FastAPI tutorials' wording).
    pub fn detail(&self) -> String {
        match self {
            TokenError::Missing => "Not authenticated".to_owned(),
            // Exactly the tutorials' text, which their clients match; the
            // reason goes to `error_description`.
            TokenError::Invalid(_) => "Could not validate credentials".to_owned(),
            TokenError::InsufficientScope(scope) => {
                format!("Not enough permissions: this route needs scope \"{scope}\"")
            }
            TokenError::Unavailable(_) => "Token verification is unavailable, try again".to_owned(),
        }
    }
}

/// Keeps a header parameter inside its quotes (RFC 7230 quoted-string).
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| *c == ' ' || c.is_ascii_graphic())
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect()
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = match &self {
            TokenError::Invalid(reason) => serde_json::json!({
                "detail": self.detail(),
                "error": "invalid_token",
                "error_description": reason,
            }),
            TokenError::InsufficientScope(_) => {
                serde_json::json!({ "detail": self.detail(), "error": "insufficient_scope" })
            }
            _ => serde_json::json!({ "detail": self.detail() }),
        };
        let mut response = (self.status_code(), axum::Json(body)).into_response();
        if let Some(value) = self.www_authenticate() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if matches!(self, TokenError::Unavailable(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_token_gets_a_bare_bearer_challenge() {
        assert_eq!(TokenError::Missing.www_authenticate().unwrap(), "Bearer");
        assert_eq!(TokenError::Missing.status_code(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_quote_in_a_reason_cannot_break_the_header() {
        let h = TokenError::invalid("bad \"x\"\n").www_authenticate().unwrap();
        assert_eq!(h, "Bearer error=\"invalid_token\", error_description=\"bad 'x'\"");
    }

    #[test]
    fn an_invalid_token_has_the_tutorials_detail_and_the_reason_apart() {
        let e = TokenError::invalid("token has expired");
        assert_eq!(e.detail(), "Could not validate credentials");
        assert!(e.www_authenticate().unwrap().contains("error_description=\"token has expired\""));
    }

    #[test]
    fn insufficient_scope_is_forbidden_and_names_the_scope() {
        let e = TokenError::InsufficientScope("admin".into());
        assert_eq!(e.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(e.www_authenticate().unwrap(), "Bearer error=\"insufficient_scope\", scope=\"admin\"");
    }
}
