//! The OpenAPI document and Swagger UI at `/docs`, served from the binary
//! (the vendored Swagger UI build: no CDN at run time, no download at build).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// The parts of the document not derived from the routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "portcullis", description = "OAuth2 password-grant authentication server: log in with Authorize, then try the routes."),
    modifiers(&PasswordFlow),
    tags(
        (name = "auth", description = "Tokens"),
        (name = "users", description = "Profiles"),
        (name = "admin", description = "User administration (scope admin)"),
        (name = "discovery", description = "Keys and metadata"),
        (name = "health", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// Declares the OAuth2 password flow that Swagger UI's Authorize uses.
struct PasswordFlow;

impl Modify for PasswordFlow {
    fn modify(&self, doc: &mut Document) {
        // Relative, so it works behind a proxy prefix. Swagger UI resolves it
        // against its page, /docs/ (its router adds the slash), so "token"
        // would post to /docs/token: "../token" reaches /token.
        let scopes = Scopes::from_iter([("admin".to_owned(), "Administer users".to_owned())]);
        let flow = Flow::Password(Password::new("../token", scopes));
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("OAuth2PasswordBearer", SecurityScheme::OAuth2(OAuth2::new([flow])));
    }
}

/// The one inline style Swagger UI needs: the `<style>` React puts in the
/// top bar's logo (an SVG, in `swagger-ui-standalone-preset.js`), allowed by
/// its hash rather than by `'unsafe-inline'`.
pub const LOGO_STYLE: &str = ".logo_small_svg__cls-2{fill:#fff}.logo_small_svg__cls-3{fill:#85ea2d}";

/// The Content-Security-Policy of every response under `/docs`.
///
/// The vendored Swagger UI's `index.html` has no inline script: it loads
/// `swagger-ui-bundle.js`, the preset and `swagger-initializer.js` (where
/// the configuration goes) from `/docs/`, so scripts are `'self'` only, with
/// no hash, nonce, `'unsafe-inline'` or `'unsafe-eval'`. Two relaxations:
/// - `style-src` also allows [`LOGO_STYLE`] by its SHA-256, and nothing else
///   inline: `'unsafe-inline'` would let injected markup bring its own CSS
///   (to redress the Authorize dialog, or leak data through selectors).
///   (The `style` attributes React sets go through the CSSOM, which CSP
///   does not govern.)
/// - `img-src data:`: `swagger-ui.css` draws its icons (arrows, lock,
///   close, …) as `data:image/svg+xml` and `data:image/png` URLs.
///
/// `connect-src 'self'` covers `../openapi.json`, `/token` and "Try it
/// out"; no form is submitted natively, and the page is never framed.
pub fn content_security_policy() -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let logo = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(LOGO_STYLE));
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'sha256-{logo}'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )
}

/// `/openapi.json` and `/docs`.
pub fn router<S: Clone + Send + Sync + 'static>(doc: Document) -> Router<S> {
    let json = doc.to_json().expect("the OpenAPI document serializes");
    // Relative to /docs/, so a proxy prefix keeps working. Authorization is
    // not persisted: Swagger UI would keep the typed username and password
    // and the tokens in localStorage, across restarts, for any script on
    // this origin to read. Its default (false) keeps them in memory only.
    let config = Config::new(["../openapi.json"]).validator_url("none");
    let ui = Router::from(SwaggerUi::new("/docs").config(config)).layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&content_security_policy()).expect("the policy is a valid header value"),
    ));
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }
            }),
        )
        .merge(ui)
}
