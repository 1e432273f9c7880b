//! The claims of a portcullis access token (RFC 9068 shape) and the checks on
//! them that do not need a key: lifetime, issuer, audience, scope.
//!
//! Time is a parameter (`now`, seconds since the Unix epoch) so expiry is
//! tested without sleeping.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::TokenError;

/// The claims of an access token.
///
/// `sub` is the username, as in the FastAPI tutorials. Claims the issuer adds
/// beyond these are kept in `extra` and can be read with [`Claims::extra_as`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the URL of the portcullis server.
    pub iss: String,
    /// Subject: the username.
    pub sub: String,
    /// Audience(s), present only when the issuer was configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: i64,
    /// Unique token id, used for revocation.
    pub jti: String,
    /// Granted scopes, space-separated (RFC 8693 §4.2).
    #[serde(default)]
    pub scope: String,
    /// Every other claim of the token.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names this audience.
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// What a verifier expects of claims besides the signature.
#[derive(Debug, Clone)]
pub(crate) struct Expectations {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway: i64,
    /// Longest `exp - iat` accepted.
    pub max_lifetime: i64,
}

/// Clock skew tolerated by default: a few seconds covers NTP-synchronised
/// machines, and a token issued one second early on another host.
pub(crate) const DEFAULT_LEEWAY_SECS: i64 = 5;

/// Longest token lifetime accepted by default: a day, far above any access
/// token's, far below "never expires".
pub(crate) const DEFAULT_MAX_LIFETIME_SECS: i64 = 24 * 3600;

impl Default for Expectations {
    fn default() -> Self {
        Expectations {
            issuer: None,
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY_SECS,
            max_lifetime: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

impl Claims {
    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// Checks that every scope in `required` was granted.
    ///
    /// # Errors
    /// [`TokenError::InsufficientScope`] naming all of `required`, as RFC 6750
    /// §3.1 asks (the client learns what to request).
    pub fn require_scopes<S: AsRef<str>>(&self, required: &[S]) -> Result<(), TokenError> {
        if required.iter().all(|s| self.has_scope(s.as_ref())) {
            return Ok(());
        }
        let wanted: Vec<&str> = required.iter().map(AsRef::as_ref).collect();
        Err(TokenError::InsufficientScope(wanted.join(" ")))
    }

    /// Reads the claims beyond the standard ones into the caller's own type.
    ///
    /// # Errors
    /// The deserialization error when the extra claims do not fit `T`.
    pub fn extra_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(self.extra.clone()))
    }

    /// Checks lifetime, issuer and audience against `now` (Unix seconds).
    pub(crate) fn validate(&self, now: i64, want: &Expectations) -> Result<(), TokenError> {
        if now >= self.exp.saturating_add(want.leeway) {
            return Err(TokenError::invalid("token has expired"));
        }
        if self.nbf > now.saturating_add(want.leeway) {
            return Err(TokenError::invalid("token is not valid yet"));
        }
        if self.iat > now.saturating_add(want.leeway) {
            return Err(TokenError::invalid("token was issued in the future"));
        }
        if let Some(issuer) = &want.issuer {
            if &self.iss != issuer {
                return Err(TokenError::invalid("token was issued by another issuer"));
            }
        }
        if !want.audiences.is_empty() {
            let ok = self.aud.as_ref().is_some_and(|aud| want.audiences.iter().any(|w| aud.contains(w)));
            if !ok {
                return Err(TokenError::invalid("token is meant for another audience"));
            }
        }
        // Whoever holds the key could otherwise mint a token that never
        // expires (and whose deny-list entry would never be pruned).
        if self.exp.saturating_sub(self.iat) > want.max_lifetime {
            return Err(TokenError::invalid("token lives longer than any token this issuer makes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "https://auth".into(),
            sub: "alice".into(),
            aud: None,
            exp: 2_000,
            iat: 1_000,
            nbf: 1_000,
            jti: "j".into(),
            scope: "me items".into(),
            extra: Map::new(),
        }
    }

    #[test]
    fn a_token_is_expired_at_its_exp_second() {
        let want = Expectations { leeway: 0, ..Default::default() };
        assert!(claims().validate(1_999, &want).is_ok());
        assert!(claims().validate(2_000, &want).is_err());
    }

    #[test]
    fn leeway_tolerates_small_clock_skew_both_ways() {
        let want = Expectations { leeway: 30, ..Default::default() };
        assert!(claims().validate(2_010, &want).is_ok());
        assert!(claims().validate(980, &want).is_ok());
        assert!(claims().validate(2_030, &want).is_err());
    }

    #[test]
    fn a_token_from_the_future_is_refused() {
        assert!(claims().validate(999 - DEFAULT_LEEWAY_SECS, &Expectations::default()).is_err());
        assert!(claims().validate(999, &Expectations::default()).is_ok(), "within the default leeway");
    }

    #[test]
    fn a_configured_audience_must_be_named_by_the_token() {
        let want = Expectations { audiences: vec!["api".into()], ..Default::default() };
        assert!(claims().validate(1_500, &want).is_err());
        let mut c = claims();
        c.aud = Some(Audience::Many(vec!["other".into(), "api".into()]));
        assert!(c.validate(1_500, &want).is_ok());
    }

    #[test]
    fn a_wrong_issuer_is_refused() {
        let want = Expectations { issuer: Some("https://other".into()), ..Default::default() };
        assert!(claims().validate(1_500, &want).is_err());
    }

    #[test]
    fn missing_scopes_are_all_named() {
        let err = claims().require_scopes(&["me", "admin"]).unwrap_err();
        assert_eq!(err, TokenError::InsufficientScope("me admin".into()));
        assert!(claims().require_scopes(&["items"]).is_ok());
    }
}
