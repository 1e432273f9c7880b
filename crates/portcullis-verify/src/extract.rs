//! The axum side: [`Authenticated`], the extractor that is FastAPI's
//! `Depends(get_current_user)`, and [`RequireScopes`], a layer that guards a
//! whole route or router by scope.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::claims::Claims;
use crate::error::TokenError;
use crate::verifier::{BoxFuture, Verifier};

/// The verified caller of a request: put it in a handler's arguments and the
/// handler only runs for a valid bearer token.
///
/// # Example
/// ```
/// use axum::{Router, routing::get};
/// use portcullis_verify::{Authenticated, KeySet, Verifier, VerifyKey};
///
/// async fn me(user: Authenticated) -> String {
///     format!("hello {}", user.subject())
/// }
///
/// let verifier = Verifier::builder(KeySet::new([VerifyKey::hs256("k", b"0123456789abcdef0123456789abcdef")])).build();
/// let app: Router = Router::new().route("/me", get(me)).with_state(verifier);
/// ```
#[derive(Debug, Clone)]
pub struct Authenticated {
    claims: Arc<Claims>,
}

impl Authenticated {
    /// The username (`sub`).
    pub fn subject(&self) -> &str {
        &self.claims.sub
    }

    /// All the token's claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Checks that every scope in `required` was granted.
    ///
    /// # Errors
    /// [`TokenError::InsufficientScope`]; return it from the handler to answer `403`.
    pub fn require_scopes<S: AsRef<str>>(&self, required: &[S]) -> Result<(), TokenError> {
        self.claims.require_scopes(required)
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 7235), as FastAPI's `OAuth2PasswordBearer` has it.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, TokenError> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(TokenError::Missing)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::invalid("empty bearer token"));
    }
    Ok(token)
}

/// A caller verified earlier in this request, and by which verifier: an
/// extractor reuses it only when it was its own verifier (same keys, same
/// issuer, same checks). Private, so nothing else can plant one.
#[derive(Clone)]
struct Verified {
    by: Verifier,
    user: Authenticated,
}

async fn authenticate(verifier: &Verifier, headers: &HeaderMap) -> Result<Authenticated, TokenError> {
    let token = bearer_token(headers)?;
    let claims = verifier.authenticate_shared(token, verifier.now()).await?;
    Ok(Authenticated { claims })
}

impl<S> FromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = TokenError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        // A RequireScopes layer in front, with this same verifier, has
        // already verified this request.
        if let Some(done) = parts.extensions.get::<Verified>().filter(|v| v.by.same_as(&verifier)) {
            return Ok(done.user.clone());
        }
        let user = authenticate(&verifier, &parts.headers).await?;
        parts.extensions.insert(Verified { by: verifier, user: user.clone() });
        Ok(user)
    }
}

/// For routes that serve anonymous callers too: `None` without a token, a
/// rejection for a bad one (a bad token is never silently anonymous).
impl<S> OptionalFromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = TokenError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(user) => Ok(Some(user)),
            Err(TokenError::Missing) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A layer that lets a request through only with a valid token granting all
/// of `scopes`; the handler behind it can still take [`Authenticated`].
///
/// # Example
/// ```
/// use axum::{Router, routing::get};
/// use portcullis_verify::{KeySet, Verifier, VerifyKey};
///
/// let verifier = Verifier::builder(KeySet::new([VerifyKey::hs256("k", b"0123456789abcdef0123456789abcdef")])).build();
/// let admin: Router = Router::new()
///     .route("/admin", get(|| async { "secret stuff" }))
///     .layer(verifier.require_scopes(["admin"]));
/// ```
#[derive(Clone)]
pub struct RequireScopes {
    verifier: Verifier,
    scopes: Arc<[String]>,
}

impl RequireScopes {
    /// Requires every scope in `scopes` (none: any valid token); made by
    /// [`Verifier::require_scopes`].
    pub(crate) fn new<I, S>(verifier: Verifier, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireScopes { verifier, scopes: scopes.into_iter().map(Into::into).collect() }
    }
}

impl<I> Layer<I> for RequireScopes {
    type Service = RequireScopesService<I>;

    fn layer(&self, inner: I) -> Self::Service {
        RequireScopesService { guard: self.clone(), inner }
    }
}

/// The service made by [`RequireScopes`].
#[derive(Clone)]
pub struct RequireScopesService<I> {
    guard: RequireScopes,
    inner: I,
}

impl<I> Service<Request> for RequireScopesService<I>
where
    I: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    I::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let guard = self.guard.clone();
        // The clone may not be ready; the ready one is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let user = match authenticate(&guard.verifier, request.headers()).await {
                Ok(user) => user,
                Err(e) => return Ok(e.into_response()),
            };
            if let Err(e) = user.require_scopes(&guard.scopes) {
                return Ok(e.into_response());
            }
            request.extensions_mut().insert(Verified { by: guard.verifier.clone(), user });
            inner.call(request).await
        })
    }
}
