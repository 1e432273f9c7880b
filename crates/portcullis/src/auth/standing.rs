//! A token's standing: whether its user, session and `jti` still allow it,
//! beyond what its signature and claims say. The server's verifier runs this
//! check on every protected request; `portcullis token decode` words its
//! refusals the same way.

use portcullis_verify::{BoxFuture, Claims, TokenCheck, TokenError};

use super::tokens::{is_client_token, session_of};
use crate::domain::UserKey;
use crate::store::{Client, SharedStore, StoreResult, TokenStanding};

/// Why a token that verifies is refused all the same, or `None` when it
/// stands. `standing` is `None` when the user no longer exists.
///
/// A token must name a live session of its user, and claim no scope beyond
/// that session's grant and the user's scopes now: under HS256 the secret
/// is shared with resource servers, and holding it must not let one mint
/// itself more power here.
pub fn refusal(standing: Option<&TokenStanding>, claims: &Claims) -> Option<&'static str> {
    let Some(standing) = standing else { return Some("user no longer exists") };
    if standing.denied {
        return Some("token has been revoked");
    }
    if session_of(claims).is_none() {
        return Some("token names no session");
    }
    let Some(session_scope) = &standing.session_scope else { return Some("session has ended") };
    if standing.user_disabled {
        return Some("user is disabled");
    }
    if !claims.scopes().all(|s| session_scope.contains(s) && standing.user_scopes.contains(s)) {
        return Some("token claims scopes its session was not granted");
    }
    None
}

/// Why a client's own token (`client_credentials`) that verifies is refused
/// all the same, or `None` when it stands: its client gone or disabled, a
/// secret rotation that revoked its tokens (its `sid` is the client's token
/// generation), a scope the client no longer holds, or its `jti` denied.
pub fn client_refusal(client: Option<&Client>, denied: bool, claims: &Claims) -> Option<&'static str> {
    let Some(client) = client else { return Some("client no longer exists") };
    if denied {
        return Some("token has been revoked");
    }
    if client.disabled {
        return Some("client is disabled");
    }
    if session_of(claims) != Some(client.generation.as_str()) {
        return Some("client's tokens were revoked");
    }
    if !claims.scopes().all(|s| client.scopes.contains(s)) {
        return Some("token claims scopes its client does not hold");
    }
    None
}

/// Where a client's own token stands: its client, and whether it is denied.
///
/// # Errors
/// A database error.
pub async fn client_standing_of(store: &SharedStore, claims: &Claims) -> StoreResult<(Option<Client>, bool)> {
    let client = match crate::domain::Username::lookup_key(&claims.sub) {
        Some(key) => store.client_by_key(&key).await?,
        None => None,
    };
    Ok((client, store.token_denied(&claims.jti).await?))
}

/// Verifies any access token of this server, a user's or a client's, and
/// checks its standing: what introspection and token exchange accept.
/// (Protected routes take user tokens only: [`StillStanding`].)
///
/// # Errors
/// What verification or the standing check answers.
pub async fn authenticate_any(
    verifier: &portcullis_verify::Verifier,
    store: &SharedStore,
    token: &str,
    now: i64,
) -> Result<Claims, TokenError> {
    let claims = verifier.verify(token, now)?;
    check(store, &claims, Clients::Checked).await?;
    Ok(claims)
}

/// What a standing check does with a client's own token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clients {
    /// Refused: the route acts for a user.
    Refused,
    /// Checked against its client.
    Checked,
}

/// Why a verified token is refused, or `None` when it stands: a user's
/// token against its user, session and the deny list, a client's against
/// its client (what `portcullis token decode` reports).
///
/// # Errors
/// A database error.
pub async fn why_refused(store: &SharedStore, claims: &Claims) -> StoreResult<Option<&'static str>> {
    if is_client_token(claims) {
        let (client, denied) = client_standing_of(store, claims).await?;
        Ok(client_refusal(client.as_ref(), denied, claims))
    } else {
        Ok(refusal(standing_of(store, claims).await?.as_ref(), claims))
    }
}

/// [`why_refused`] as a check; with [`Clients::Refused`], a client's own
/// token is refused outright.
async fn check(store: &SharedStore, claims: &Claims, clients: Clients) -> Result<(), TokenError> {
    let why = if clients == Clients::Refused && is_client_token(claims) {
        // A client's own token names no user: no route that acts for a
        // user (`/users/me`, `/admin/*`, `/logout`) takes it.
        Ok(Some("a client's token names no user"))
    } else {
        why_refused(store, claims).await
    };
    match why {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(TokenError::invalid(why)),
        Err(e) => {
            tracing::error!(error = %e, "database failure while checking a token");
            Err(TokenError::Unavailable("database unavailable".into()))
        }
    }
}

/// Looks up where the token of `claims` stands.
///
/// # Errors
/// A database error.
pub async fn standing_of(store: &SharedStore, claims: &Claims) -> StoreResult<Option<TokenStanding>> {
    store.token_standing(&UserKey::of(&claims.sub), session_of(claims), &claims.jti).await
}

/// The [`TokenCheck`] of the server's verifier: refuses a token whose user
/// was disabled or deleted, whose session ended (logout, password change)
/// or whose `jti` was denied (revocation).
pub struct StillStanding {
    store: SharedStore,
}

impl StillStanding {
    /// The check, reading standing from `store`.
    pub fn new(store: SharedStore) -> Self {
        StillStanding { store }
    }
}

impl TokenCheck for StillStanding {
    fn check<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), TokenError>> {
        Box::pin(check(&self.store, claims, Clients::Refused))
    }
}
