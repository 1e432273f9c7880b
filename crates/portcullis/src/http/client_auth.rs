//! Client authentication at `/token`, `/token/revoke` and
//! `/token/introspect` (RFC 6749 §2.3.1): `client_secret_basic` or
//! `client_secret_post`, never both.
//!
//! Inside Basic, the id and the secret are each form-encoded before they
//! are joined with `:` (§2.3.1), so a `:` or a non-ASCII character in an id
//! survives. `Basic Og==` (an empty id and secret, what Swagger UI sends
//! with its password flow) is no client authentication at all.
//!
//! A client id with no secret (Basic `id:`, or `client_id` alone in the
//! form) is how public clients name themselves (RFC 6749 §3.2.1), and what
//! requests-oauthlib and Authlib send for the password grant by default:
//! there it is no client authentication, as before clients existed. Where a
//! client must authenticate (`client_credentials`, introspection) it is
//! refused.
//!
//! An unknown client and a wrong secret answer alike, in body and in time:
//! both look the client up (memory, or one query) and compare one SHA-256.
//! Failures are throttled like failed logins, by client id and address.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use percent_encoding::percent_decode;

use super::input::OAuthForm;
use crate::auth::clients::secret_matches;
use crate::auth::throttle::Origin;
use crate::domain::{UserKey, Username};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::Client;

/// Client credentials as presented (no `Debug`: the secret).
pub struct Presented {
    /// The `client_id`.
    pub id: String,
    secret: String,
}

fn bad_basic() -> ApiError {
    ApiError::invalid_client(
        "malformed Basic credentials: send base64(form-encoded client_id \":\" form-encoded client_secret)",
    )
}

/// `+` is a space, then percent-decoding, which must give UTF-8.
fn form_decode(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_decode(spaced.as_bytes()).decode_utf8().ok().map(|s| s.into_owned())
}

/// The credentials of an `Authorization: Basic` header: `Ok(None)` when
/// there is none, or it is `Basic Og==`.
fn from_basic(headers: &HeaderMap) -> ApiResult<Option<Presented>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| bad_basic())?.trim();
    let Some((scheme, encoded)) = value.split_once(' ') else { return Ok(None) };
    // Another scheme (a bearer token sent along) is not client authentication.
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let encoded = encoded.trim();
    let raw = STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).map_err(|_| bad_basic())?;
    let raw = String::from_utf8(raw).map_err(|_| bad_basic())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad_basic)?;
    let (id, secret) = (form_decode(id).ok_or_else(bad_basic)?, form_decode(secret).ok_or_else(bad_basic)?);
    match (id.is_empty(), secret.is_empty()) {
        (true, true) => Ok(None),
        (true, false) => Err(ApiError::invalid_client("Basic credentials carry a secret but no client id")),
        _ => Ok(Some(Presented { id, secret })),
    }
}

/// The client credentials a request presents, by either method; `None`
/// when it presents none. The secret is empty for a bare client id.
///
/// # Errors
/// `invalid_request` when both methods are used; `invalid_client` for
/// malformed Basic credentials, or a secret without an id.
pub fn presented(headers: &HeaderMap, form: &OAuthForm) -> ApiResult<Option<Presented>> {
    let basic = from_basic(headers)?;
    let (form_id, form_secret) = (form.get("client_id"), form.get("client_secret"));
    if let Some(basic) = basic {
        if form_secret.is_some() || form_id.is_some_and(|id| id != basic.id) {
            return Err(ApiError::invalid_request(
                "client credentials were sent both in the Authorization header and in the form: use one method",
            ));
        }
        return Ok(Some(basic));
    }
    match (form_id, form_secret) {
        (None, None) => Ok(None),
        (Some(id), secret) => Ok(Some(Presented { id: id.to_owned(), secret: secret.unwrap_or_default().to_owned() })),
        (None, Some(_)) => Err(ApiError::invalid_client("client_secret was sent without client_id")),
    }
}

fn failed() -> ApiError {
    ApiError::invalid_client("Incorrect client id or secret")
}

/// Checks presented credentials: the client, enabled, with that secret.
///
/// # Errors
/// `401 invalid_client` for an unknown client or a wrong secret (the same
/// answer) and for a disabled one (only to a caller with its secret);
/// `429` when this client id or address has failed too often.
pub async fn authenticate(state: &AppState, presented: Presented, addr: Option<&Origin>) -> ApiResult<Client> {
    // `None`: an id no client can have, which never reaches the database.
    let lookup = Username::lookup_key(&presented.id);
    let bucket = lookup.clone().unwrap_or_else(|| UserKey::of(&presented.id));
    let attempt = state.throttle.client(&bucket, addr, state.clock.now()).await?.map_err(ApiError::Throttled)?;
    let client = match lookup {
        Some(key) => state.store.client_by_key(&key).await?,
        None => None,
    };
    if !secret_matches(&presented.secret, client.as_ref().map(|c| c.secret_hash.as_str())) {
        attempt.failed(state.clock.now()).await?;
        return Err(failed());
    }
    attempt.succeeded().await?;
    let client = client.ok_or_else(failed)?;
    if client.disabled {
        return Err(ApiError::invalid_client("Client is disabled"));
    }
    Ok(client)
}

/// Whether a bare client id (no secret) may stand for "no client".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Public {
    /// Yes: the password and refresh grants, token exchange, revocation.
    Ignored,
    /// No: `client_credentials` and introspection need a real client.
    Refused,
}

/// [`presented`] then [`authenticate`]: the authenticated client, or `None`
/// when the request presents no client credentials (or, where `public` is
/// [`Public::Ignored`], a bare client id).
///
/// # Errors
/// As those two; `invalid_client` for a bare id where `public` refuses it.
pub async fn optional_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &OAuthForm,
    addr: Option<&Origin>,
    public: Public,
) -> ApiResult<Option<Client>> {
    match presented(headers, form)? {
        Some(p) if p.secret.is_empty() => match public {
            Public::Ignored => Ok(None),
            Public::Refused => Err(ApiError::invalid_client(
                "a client_id without client_secret is no client authentication: send both",
            )),
        },
        Some(p) => authenticate(state, p, addr).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn basic(raw: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers
            .insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw))).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_form_decoded_after_base64() {
        let p = from_basic(&basic("svc%3Aa+b%C3%A9:s%2Bc%3Ar+t")).unwrap().unwrap();
        assert_eq!((p.id.as_str(), p.secret.as_str()), ("svc:a bé", "s+c:r t"));
        // Only the first colon splits: a raw colon in the secret is the secret's.
        let p = from_basic(&basic("svc:a:b")).unwrap().unwrap();
        assert_eq!(p.secret, "a:b");
    }

    #[test]
    fn swagger_uis_empty_basic_is_no_client() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic Og=="));
        assert!(from_basic(&headers).unwrap().is_none());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert!(from_basic(&headers).unwrap().is_none());
    }

    #[test]
    fn malformed_basic_is_refused() {
        for value in ["Basic !!!", "Basic bm9jb2xvbg==", "Basic /w=="] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert!(from_basic(&headers).is_err(), "{value}");
        }
        assert!(from_basic(&basic("svc:%FF")).is_err());
        assert!(from_basic(&basic(":secret")).is_err());
    }
}
