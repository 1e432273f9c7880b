//! [`Verifier`]: the keys a token may be signed with, and the algorithm,
//! issuer and audience it must carry. Cheap to clone; the key set can be
//! swapped while requests are being verified (key rotation).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use jsonwebtoken::Validation;

use crate::claims::{Claims, Expectations};
use crate::error::TokenError;
use crate::keys::KeySet;

/// Where a verifier reads the time: Unix seconds.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Seconds since the Unix epoch: the one place this crate reads the clock.
#[allow(clippy::disallowed_methods)]
fn system_time() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A boxed future, as returned by [`TokenCheck::check`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A check run after the signature and claims are good, e.g. a deny list or
/// "is this user still enabled". The server plugs its database in here.
pub trait TokenCheck: Send + Sync + 'static {
    /// `Ok` lets the request through.
    ///
    /// # Errors
    /// The [`TokenError`] to answer with.
    fn check<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), TokenError>>;
}

/// Verifies bearer tokens. Clone it freely: clones share one key set.
///
/// # Example
/// ```
/// use portcullis_verify::{KeySet, Verifier, VerifyKey};
///
/// let verifier = Verifier::builder(KeySet::new([VerifyKey::hs256("k1", b"a secret of at least thirty-two bytes")]))
///     .issuer("http://127.0.0.1:8000")
///     .build();
/// assert!(verifier.verify("not.a.token", 0).is_err());
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: RwLock<Arc<KeySet>>,
    /// Bumped by every key-set change: a verification that began under
    /// another key set does not enter `verified`.
    key_generation: AtomicU64,
    /// Tokens whose header and signature were checked, by their exact
    /// text, with their claims (see [`VerifierBuilder::verified_cache`]).
    verified: Option<quick_cache::sync::Cache<String, Arc<Claims>>>,
    expect: Expectations,
    clock: Clock,
    check: Option<Arc<dyn TokenCheck>>,
    #[cfg(feature = "jwks")]
    source: Option<crate::jwks::JwksSource>,
}

/// Why `verify` failed: an unknown `kid` may be worth a key refetch.
enum Failure {
    UnknownKey,
    Token(TokenError),
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        Failure::Token(e)
    }
}

impl From<Failure> for TokenError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::UnknownKey => TokenError::invalid("token is signed with an unknown key"),
            Failure::Token(e) => e,
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys().len())
            .field("issuer", &self.inner.expect.issuer)
            .field("audiences", &self.inner.expect.audiences)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`].
pub struct VerifierBuilder {
    keys: KeySet,
    verified_cache: usize,
    expect: Expectations,
    clock: Clock,
    check: Option<Arc<dyn TokenCheck>>,
    #[cfg(feature = "jwks")]
    source: Option<crate::jwks::JwksSource>,
}

impl VerifierBuilder {
    /// Require this `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.expect.issuer = Some(issuer.into());
        self
    }

    /// Require `aud` to name this audience (call again to accept several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.expect.audiences.push(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 5).
    pub fn leeway(mut self, seconds: i64) -> Self {
        self.expect.leeway = seconds;
        self
    }

    /// Longest lifetime (`exp - iat`, seconds) a token may claim (default a
    /// day); the server sets its access-token lifetime.
    pub fn max_lifetime(mut self, seconds: i64) -> Self {
        self.expect.max_lifetime = seconds;
        self
    }

    /// Read the time (Unix seconds) from `clock` instead of the system
    /// clock: the server passes its own, which tests can move forward.
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many verified tokens to remember (default 4096; 0: none). A
    /// token presented again (a client uses one for many requests) skips
    /// base64, JSON and signature work, which is most of a check; its
    /// lifetime, issuer and audience are checked again at every use, and the
    /// [`TokenCheck`] always runs. Changing the key set forgets them all.
    /// Each entry holds the token and its claims: about 1 KiB.
    pub fn verified_cache(mut self, tokens: usize) -> Self {
        self.verified_cache = tokens;
        self
    }

    /// Run this check on every token that passed the others.
    pub fn check(mut self, check: impl TokenCheck) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// With a JWKS URL: refetch on an unknown `kid` at most this often
    /// (default 10 s).
    #[cfg(feature = "jwks")]
    pub fn refetch_interval(mut self, interval: std::time::Duration) -> Self {
        if let Some(source) = &mut self.source {
            source.refetch_interval = interval;
        }
        self
    }

    /// With a JWKS URL: refresh the key set in the background this often
    /// (default 5 minutes).
    #[cfg(feature = "jwks")]
    pub fn refresh_interval(mut self, interval: std::time::Duration) -> Self {
        if let Some(source) = &mut self.source {
            source.refresh_interval = interval;
        }
        self
    }

    /// The verifier. With a JWKS URL, keys are fetched at the first token
    /// (use [`VerifierBuilder::connect`] to fetch them now), and refreshed in
    /// the background when a tokio runtime is running.
    pub fn build(self) -> Verifier {
        let verifier = Verifier {
            inner: Arc::new(Inner {
                keys: RwLock::new(Arc::new(self.keys)),
                key_generation: AtomicU64::new(0),
                verified: (self.verified_cache > 0).then(|| quick_cache::sync::Cache::new(self.verified_cache)),
                expect: self.expect,
                clock: self.clock,
                check: self.check,
                #[cfg(feature = "jwks")]
                source: self.source,
            }),
        };
        #[cfg(feature = "jwks")]
        verifier.spawn_refresh();
        verifier
    }

    /// Builds the verifier and fetches its key set once.
    ///
    /// # Errors
    /// [`crate::JwksError`] when the JWKS URL cannot be fetched or parsed.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run() -> Result<(), portcullis_verify::JwksError> {
    /// use portcullis_verify::Verifier;
    ///
    /// let auth = Verifier::from_jwks("http://127.0.0.1:8000/.well-known/jwks.json")
    ///     .issuer("http://127.0.0.1:8000")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "jwks")]
    pub async fn connect(self) -> Result<Verifier, crate::JwksError> {
        let verifier = self.build();
        verifier.refresh_keys().await?;
        Ok(verifier)
    }
}

/// The media type RFC 9068 §2.1 gives access tokens, short and long forms.
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt"))
}

impl Verifier {
    /// An unknown `kid` may be a rotation we have not seen: refetch the key
    /// set (rate-limited) and try once more.
    #[cfg_attr(not(feature = "jwks"), allow(unused_variables))]
    async fn after_refetch(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        #[cfg(feature = "jwks")]
        if let Some(source) = &self.inner.source {
            match source.refetch().await {
                Some(Ok(keys)) => self.set_keys(keys),
                Some(Err(e)) => tracing::warn!(error = %e, "could not refetch the JWKS; keeping the cached keys"),
                // Rate-limited, or another request just refetched.
                None => {}
            }
            return self.verify(token, now);
        }
        Err(Failure::UnknownKey.into())
    }

    /// Whether `other` is this verifier (or a clone of it).
    pub(crate) fn same_as(&self, other: &Verifier) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Starts a verifier that accepts tokens signed by these keys.
    pub fn builder(keys: KeySet) -> VerifierBuilder {
        VerifierBuilder {
            keys,
            verified_cache: 4096,
            expect: Expectations::default(),
            clock: Arc::new(system_time),
            check: None,
            #[cfg(feature = "jwks")]
            source: None,
        }
    }

    /// Starts a verifier that takes its keys from a JWKS URL, e.g.
    /// `http://127.0.0.1:8000/.well-known/jwks.json`.
    #[cfg(feature = "jwks")]
    pub fn from_jwks(url: impl Into<String>) -> VerifierBuilder {
        let mut builder = Verifier::builder(KeySet::default());
        builder.source = Some(crate::jwks::JwksSource::new(url.into()));
        builder
    }

    /// A layer that lets requests through only with all of `scopes`.
    pub fn require_scopes<I, S>(&self, scopes: I) -> crate::RequireScopes
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        crate::RequireScopes::new(self.clone(), scopes)
    }

    /// Fetches the key set from the JWKS URL now (no-op without one).
    ///
    /// # Errors
    /// [`crate::JwksError`]; the keys already held stay in use.
    #[cfg(feature = "jwks")]
    pub async fn refresh_keys(&self) -> Result<(), crate::JwksError> {
        if let Some(source) = &self.inner.source {
            let keys = source.fetch().await?;
            self.set_keys(keys);
        }
        Ok(())
    }

    /// How many times the key set was fetched from the JWKS URL.
    #[cfg(feature = "jwks")]
    pub fn key_fetches(&self) -> u64 {
        self.inner.source.as_ref().map_or(0, |s| s.fetches())
    }

    #[cfg(feature = "jwks")]
    fn spawn_refresh(&self) {
        let Some(source) = &self.inner.source else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let every = source.refresh_interval;
        // Weak: the task ends when the last clone of the verifier is dropped.
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let verifier = Verifier { inner };
                if let Err(e) = verifier.refresh_keys().await {
                    tracing::warn!(error = %e, "could not refresh the JWKS; keeping the cached keys");
                }
            }
        });
    }

    /// The time now, Unix seconds, by this verifier's clock.
    pub fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// The current key set.
    pub fn keys(&self) -> Arc<KeySet> {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the key set; requests in flight finish with the old one.
    pub fn set_keys(&self, keys: KeySet) {
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        // A key gone (retired, or withdrawn from a JWKS) takes its tokens
        // with it.
        self.inner.key_generation.fetch_add(1, Ordering::AcqRel);
        if let Some(verified) = &self.inner.verified {
            verified.clear();
        }
    }

    /// Verifies a token's header, signature and claims at `now` (Unix
    /// seconds). Does not run the [`TokenCheck`]; [`Verifier::authenticate`] does.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] saying what is wrong (never echoing the token).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        self.verify_inner(token, now).map(Arc::unwrap_or_clone).map_err(Into::into)
    }

    fn verify_inner(&self, token: &str, now: i64) -> Result<Arc<Claims>, Failure> {
        // Found only by a hash of the whole token and then compared whole:
        // a token that differs anywhere is verified from scratch. (Its text
        // is compared only against the few entries sharing its randomly
        // seeded hash, so timing says nothing useful about other tokens.)
        if let Some(claims) = self.inner.verified.as_ref().and_then(|v| v.get(token)) {
            claims.validate(now, &self.inner.expect)?;
            return Ok(claims);
        }
        let generation = self.inner.key_generation.load(Ordering::Acquire);
        let claims = Arc::new(self.verify_uncached(token, now)?);
        if let Some(verified) = &self.inner.verified {
            if self.inner.key_generation.load(Ordering::Acquire) == generation {
                verified.insert(token.to_owned(), Arc::clone(&claims));
                // `set_keys` bumps the generation before it clears: either
                // this sees the bump, or the clear comes after the insert.
                if self.inner.key_generation.load(Ordering::Acquire) != generation {
                    verified.remove(token);
                }
            }
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<Claims, Failure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::invalid("malformed token"))?;
        if !is_access_token_type(header.typ.as_deref()) {
            return Err(TokenError::invalid("not an access token (typ must be at+jwt)").into());
        }
        // RFC 7515 §4.1.11: extensions listed as critical must be
        // understood, and this verifier understands none.
        if header.crit.is_some() {
            return Err(TokenError::invalid("token names critical header extensions").into());
        }
        let keys = self.keys();
        let key = keys.find(header.kid.as_deref()).ok_or(Failure::UnknownKey)?;
        if header.alg != key.algorithm() {
            return Err(TokenError::invalid("token algorithm does not match its key").into());
        }
        let mut validation = Validation::new(key.algorithm());
        // Lifetime, issuer and audience are checked below with the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => TokenError::invalid("bad signature"),
                ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                    TokenError::invalid("token claims are missing or malformed")
                }
                _ => TokenError::invalid("malformed token"),
            }
        })?;
        data.claims.validate(now, &self.inner.expect)?;
        Ok(data.claims)
    }

    /// [`Verifier::verify`], then the configured [`TokenCheck`].
    ///
    /// # Errors
    /// As `verify`, or what the check answers.
    pub async fn authenticate(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        self.authenticate_shared(token, now).await.map(Arc::unwrap_or_clone)
    }

    /// [`Verifier::authenticate`], sharing the claims with the cache of
    /// verified tokens instead of copying them (the extractor's path).
    pub(crate) async fn authenticate_shared(&self, token: &str, now: i64) -> Result<Arc<Claims>, TokenError> {
        let claims = match self.verify_inner(token, now) {
            Ok(claims) => claims,
            Err(Failure::UnknownKey) => Arc::new(self.after_refetch(token, now).await?),
            Err(Failure::Token(e)) => return Err(e),
        };
        if let Some(check) = &self.inner.check {
            check.check(&claims).await?;
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::VerifyKey;

    const SECRET: &[u8] = b"a secret of at least thirty-two bytes, for tests";
    const NOW: i64 = 1_800_000_000;

    fn token(kid: &str, exp: i64) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.into());
        let claims = json!({"iss": "i", "sub": "ann", "iat": NOW, "nbf": NOW, "exp": exp, "jti": "j", "scope": "me"});
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn verifier(cache: usize) -> Verifier {
        Verifier::builder(KeySet::new([VerifyKey::hs256("k1", SECRET)])).issuer("i").verified_cache(cache).build()
    }

    /// What the remembered tokens must not change: each is checked against
    /// the clock at every use, and a key taken away takes its tokens along.
    #[test]
    fn a_remembered_token_still_expires_and_still_dies_with_its_key() {
        for cache in [0, 16] {
            let verifier = verifier(cache);
            let t = token("k1", NOW + 60);
            assert_eq!(verifier.verify(&t, NOW).err(), None);
            assert!(verifier.verify(&t, NOW + 30).is_ok(), "cache={cache}");
            assert!(verifier.verify(&t, NOW + 600).is_err(), "cache={cache}: expired");
            assert!(verifier.verify(&t, NOW).is_ok());
            verifier.set_keys(KeySet::new([VerifyKey::hs256("k2", b"another secret of thirty-two bytes or more")]));
            assert!(verifier.verify(&t, NOW).is_err(), "cache={cache}: its key is gone");
        }
    }

    #[test]
    fn a_token_altered_anywhere_is_verified_from_scratch() {
        let verifier = verifier(16);
        let t = token("k1", NOW + 60);
        assert!(verifier.verify(&t, NOW).is_ok());
        let mut forged = t.clone();
        forged.push('A');
        assert!(verifier.verify(&forged, NOW).is_err());
        let (head, signature) = t.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
        assert!(verifier.verify(&format!("{head}.{flipped}{}", &signature[1..]), NOW).is_err());
    }
}
