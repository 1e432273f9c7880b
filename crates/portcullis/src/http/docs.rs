//! The OpenAPI document and Swagger UI at `/docs`, served from the binary
//! (the vendored Swagger UI build: no CDN at run time, no download at build).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
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

/// `/openapi.json` and `/docs`.
pub fn router<S: Clone + Send + Sync + 'static>(doc: Document) -> Router<S> {
    let json = doc.to_json().expect("the OpenAPI document serializes");
    // Relative to /docs/, so a proxy prefix keeps working.
    let config = Config::new(["../openapi.json"]).persist_authorization(true).validator_url("none");
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }
            }),
        )
        .merge(SwaggerUi::new("/docs").config(config))
}
