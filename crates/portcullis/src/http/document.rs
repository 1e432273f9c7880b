//! Pieces of the OpenAPI document shared by the routes: the schemas of the
//! fields several bodies take (each rule written once, as the server
//! applies it), the error body, and [`document_generic_answers`], which
//! adds to every operation the answers it can give whatever its handler
//! does (a malformed body, a missing token, a database outage, the
//! timeout…), so no route's annotation has to repeat them.
//!
//! `scripts/schemathesis` fuzzes the server against this document: a status
//! a route can answer but the document does not list, or a body outside its
//! schema, fails CI.

use std::borrow::Cow;

use utoipa::openapi::content::Content;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Rust's `char::is_whitespace` (Unicode White_Space), as a regex class
/// body: what the server trims from a field and refuses inside a name.
const WHITESPACE: &str = r"\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Rust's `char::is_control` (general category Cc).
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

fn string(description: &str, pattern: String, min: Option<usize>, max: Option<usize>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(min)
        .max_length(max)
        .into()
}

macro_rules! field_schema {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

field_schema! {
    /// A username as registered: [`crate::domain::Username::parse`].
    Username => string(
        "1 to 64 characters (after NFKC normalization); no whitespace, control, format, invisible, \
         direction-changing, private-use or unassigned character, and no `:`. Unique ignoring case and \
         width, and not confusable with an existing name (`409`).",
        // Whitespace, controls and `:`, then the Basic Multilingual Plane's
        // format, default-ignorable and bidi-control characters, private use
        // and noncharacters. Unassigned code points (and astral ones) are
        // beyond a pattern: `422`.
        format!(
            r"^[^{CONTROL}{WHITESPACE}:\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ue000-\uf8ff\ufdd0-\ufdef\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\ufffe\uffff]+$"
        ),
        Some(1),
        Some(crate::domain::USERNAME_MAX_CHARS),
    )
}

field_schema! {
    /// A password being set: [`crate::domain::NewPassword::parse`].
    NewPassword => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "8 characters to 1024 bytes; not one of the ~20,000 most common leaked passwords (`422`). No \
             composition rules.",
        ))
        .min_length(Some(crate::domain::PASSWORD_MIN_CHARS))
        .max_length(Some(crate::domain::PASSWORD_MAX_BYTES))
        .into()
}

field_schema! {
    /// An email address: [`crate::domain::parse_email`].
    Email => string(
        "Trimmed; empty means none. At most 254 bytes, exactly one `@`, neither first nor last, no \
         whitespace or control characters.",
        format!(r"^[{WHITESPACE}]*(?:[^@{CONTROL}{WHITESPACE}]+@[^@{CONTROL}{WHITESPACE}]+)?[{WHITESPACE}]*$"),
        None,
        Some(254),
    )
}

field_schema! {
    /// A full name: [`crate::domain::parse_full_name`].
    FullName => string(
        "Trimmed; empty means none. At most 200 characters, no control characters.",
        format!(r"^[{WHITESPACE}]*[^{CONTROL}]*[{WHITESPACE}]*$"),
        None,
        Some(200),
    )
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
const SCOPE_CHARS: &str = r"\x21\x23-\x5b\x5d-\x7e";

field_schema! {
    /// One scope name: [`crate::domain::Scopes::from_names`].
    ScopeName => string(
        "A scope name: 1 to 128 printable ASCII characters, without spaces, quotes or backslashes.",
        format!(r"^[{SCOPE_CHARS}]+$"),
        Some(1),
        Some(128),
    )
}

field_schema! {
    /// A space-separated list of scopes: [`crate::domain::Scopes::parse`].
    ScopeList => string(
        "Space-separated scope names (each 1 to 128 printable ASCII characters, without quotes or \
         backslashes).",
        format!(r"^[\t\n\f\r {SCOPE_CHARS}]*$"),
        None,
        None,
    )
}

/// Every error body but the timeout's (`408`, empty): `detail` always, as
/// FastAPI clients read it; OAuth (RFC 6749 §5.2) and bearer-token (RFC
/// 6750) errors add `error` and, but for `insufficient_scope`,
/// `error_description`.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
struct ErrorBody {
    /// What went wrong, for people.
    detail: String,
    /// The RFC 6749 or RFC 6750 error code.
    #[schema(required = false)]
    error: String,
    /// The reason, for OAuth clients (equal to `detail`, but on a refused
    /// bearer token, where `detail` is `Could not validate credentials`).
    #[schema(required = false)]
    error_description: String,
}

/// Adds to every operation the answers any route of its kind gives, with
/// the error body and headers every error answer carries:
/// - every route: `408` (handling took over 30 s; empty body);
/// - a JSON body: `400` (not JSON), `413`, `415` (not
///   `application/json`), `422` (missing, unknown or mistyped field);
/// - a form body: `400` (`invalid_request`), `413`;
/// - a path parameter: `400` (the path is not UTF-8);
/// - a bearer token: `401`, and `403` when scopes are required;
/// - a body or a token (the database is asked): `503`, `Retry-After`.
///
/// A status the route's annotation lists keeps its description. Every
/// `4xx`/`5xx` but `408` gets the `Error` body; `401` carries
/// `WWW-Authenticate`, `429` `Retry-After`.
pub fn document_generic_answers(doc: &mut Document) {
    doc.components.get_or_insert_with(Default::default).schemas.insert("Error".into(), ErrorBody::schema());
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            add_generic_answers(operation);
        }
    }
}

/// A header every such answer carries. utoipa's `Header` has no `required`
/// field; OpenAPI's has one, so it goes in through the flattened map.
fn required_header(description: &str) -> RefOr<Header> {
    let mut header = Header::default();
    header.description = Some(description.to_owned());
    header.extensions = Some(Extensions::from_iter([("required", serde_json::Value::Bool(true))]));
    header.into()
}

fn add_generic_answers(operation: &mut Operation) {
    let body: Vec<String> = match &operation.request_body {
        Some(RefOr::T(body)) => body.content.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let json = body.iter().any(|t| t == "application/json");
    let form = body.iter().any(|t| t == "application/x-www-form-urlencoded");
    let path_parameter = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path)));
    // `SecurityRequirement` keeps its map private: read it as JSON.
    let requirements = serde_json::to_value(&operation.security).unwrap_or_default();
    let schemes: Vec<&serde_json::Value> =
        requirements.as_array().into_iter().flatten().filter_map(|r| r.as_object()).flat_map(|r| r.values()).collect();
    let bearer = !schemes.is_empty();
    let scoped = schemes.iter().any(|scopes| scopes.as_array().is_some_and(|s| !s.is_empty()));
    let database = bearer || !body.is_empty();

    let mut generic: Vec<(&str, &str)> = Vec::new();
    if json {
        generic.push(("400", "The body is not JSON"));
        generic.push(("415", "The body is not sent as `Content-Type: application/json`"));
        generic.push(("422", "A field is missing, unknown or of the wrong type, or breaks a rule"));
    }
    if form {
        generic.push((
            "400",
            "`invalid_request`: a missing or repeated field, a body that is not a form, or credentials in the URL",
        ));
    }
    if json || form {
        generic.push(("413", "The body is over 64 KiB"));
    }
    if path_parameter {
        generic.push(("400", "The path is not UTF-8"));
    }
    if bearer {
        generic.push(("401", "Missing, invalid or expired token"));
    }
    if scoped {
        generic.push(("403", "The token lacks a scope this route needs"));
    }
    if database {
        generic.push(("503", "The database is unavailable, or password hashing is saturated"));
    }
    generic.push(("408", "Handling the request took over 30 seconds (empty body, no `Content-Type`)"));
    for (status, description) in generic {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| Response::new(description).into());
    }

    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        let error = status.starts_with('4') || status.starts_with('5');
        if !error || status == "408" {
            continue;
        }
        if response.content.is_empty() {
            response
                .content
                .insert("application/json".into(), Content::new(Some(Ref::from_schema_name("Error"))).into());
        }
        let header = match status.as_str() {
            "401" => Some((
                "WWW-Authenticate",
                "The challenge: `Bearer`, with `error` and `error_description` when a token was refused",
            )),
            "403" if scoped => Some(("WWW-Authenticate", "`Bearer error=\"insufficient_scope\"` and the scope needed")),
            "429" => Some(("Retry-After", "Seconds to wait")),
            "503" if database => Some(("Retry-After", "Seconds to wait")),
            _ => None,
        };
        if let Some((name, description)) = header {
            response.headers.entry(name.to_owned()).or_insert_with(|| required_header(description));
        }
    }
}
