//! Request extractors whose rejections are [`ApiError`]s, so every
//! malformed request gets a JSON `detail` instead of axum's plain text.

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use percent_encoding::percent_decode;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// The request body limit, also enforced by `DefaultBodyLimit` in `http::app`.
pub const BODY_LIMIT: usize = 64 * 1024;

fn too_large() -> ApiError {
    ApiError::Rejected { status: StatusCode::PAYLOAD_TOO_LARGE, detail: "request body is larger than 64 KiB".into() }
}

fn from_bytes_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    ApiError::Rejected { status: r.status(), detail: format!("could not read the request body: {}", r.body_text()) }
}

/// `axum::Json` with JSON error bodies.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<Object<T>>::from_request(req, state).await {
            Ok(Json(Object(value))) => Ok(ApiJson(value)),
            Err(JsonRejection::BytesRejection(r)) => Err(from_bytes_rejection(r)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::Rejected {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail: "send a JSON body with Content-Type: application/json".into(),
            }),
            Err(r) => Err(ApiError::Rejected { status: r.status(), detail: without_values(&r.body_text()) }),
        }
    }
}

/// A body that must be a JSON object. serde's derived `Deserialize` also
/// takes a struct from an array of its fields in order (`["alice", "pw"]`
/// for `{"username", "password"}`); every JSON body here is an object with
/// named fields, so anything else is a `422`.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(Fields(PhantomData)).map(Object)
    }
}

/// serde quotes the offending value in its messages ("invalid type: string
/// \"hunter2\", expected …"): drop it, since the value may be a password.
fn without_values(message: &str) -> String {
    let mut out = message.to_owned();
    for marker in ["invalid type: ", "invalid value: ", "invalid length "] {
        while let Some(start) = out.find(marker) {
            let rest = &out[start + marker.len()..];
            let Some(end) = rest.find(", expected") else { break };
            let label = marker.trim_end_matches([':', ' ']).replace("invalid", "INVALID");
            out = format!("{}{label}{}", &out[..start], &rest[end..]);
        }
    }
    out.replace("INVALID", "invalid")
}

/// `axum::extract::Path` with JSON error bodies.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(r) => Err(ApiError::Rejected { status: StatusCode::BAD_REQUEST, detail: r.body_text() }),
        }
    }
}

/// Parameters that are credentials: never accepted in a URL, where proxies
/// and access logs keep them.
const SECRET_PARAMS: &[&str] = &["password", "client_secret", "refresh_token", "token", "subject_token", "actor_token"];

/// The fields of an OAuth form body, `application/x-www-form-urlencoded` or
/// `multipart/form-data`, each at most once (RFC 6749 §3.2).
#[derive(Default)]
pub struct OAuthForm {
    fields: HashMap<String, String>,
}

impl std::fmt::Debug for OAuthForm {
    /// Field names only: the values are passwords and tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.fields.keys()).finish()
    }
}

impl OAuthForm {
    /// The value of a field, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The value of a required field.
    ///
    /// # Errors
    /// `invalid_request` naming the field.
    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::invalid_request(format!("missing form field \"{name}\"")))
    }

    fn insert(&mut self, name: String, value: String) -> Result<(), ApiError> {
        if self.fields.contains_key(&name) {
            return Err(ApiError::invalid_request(format!("form field \"{name}\" is given more than once")));
        }
        self.fields.insert(name, value);
        Ok(())
    }

    fn parse_urlencoded(body: &[u8]) -> Result<Self, ApiError> {
        let mut form = OAuthForm::default();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            form.insert(decode_component(name)?, decode_component(value)?)?;
        }
        Ok(form)
    }

    async fn parse_multipart(mut multipart: Multipart) -> Result<Self, ApiError> {
        let mut form = OAuthForm::default();
        loop {
            let field = multipart.next_field().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::invalid_request(format!("malformed multipart body: {}", e.body_text()))
                }
            })?;
            let Some(field) = field else { break };
            let name = field.name().unwrap_or_default().to_owned();
            let bytes = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::invalid_request("malformed multipart body")
                }
            })?;
            let value = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::invalid_request("form body is not valid UTF-8"))?;
            form.insert(name, value)?;
        }
        Ok(form)
    }
}

/// `+` is a space, then percent-decoding, which must give UTF-8.
fn decode_component(raw: &[u8]) -> Result<String, ApiError> {
    let spaced: Vec<u8> = raw.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
    percent_decode(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::invalid_request("form body is not valid UTF-8"))
}

fn has_secret_in_query(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        let name = decode_component(name.as_bytes()).unwrap_or_default();
        SECRET_PARAMS.contains(&name.as_str())
    })
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.uri().query().is_some_and(has_secret_in_query) {
            return Err(ApiError::invalid_request(
                "credentials must be sent in the form body, never in the URL: this request was refused",
            ));
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match content_type.as_str() {
            "application/x-www-form-urlencoded" => {
                let body = Bytes::from_request(req, state).await.map_err(from_bytes_rejection)?;
                OAuthForm::parse_urlencoded(&body)
            }
            "multipart/form-data" => {
                let multipart = Multipart::from_request(req, state)
                    .await
                    .map_err(|e| ApiError::invalid_request(format!("malformed multipart body: {}", e.body_text())))?;
                OAuthForm::parse_multipart(multipart).await
            }
            "application/json" => Err(ApiError::invalid_request(
                "this endpoint takes a form, not JSON: send Content-Type: application/x-www-form-urlencoded",
            )),
            "" => Err(ApiError::invalid_request(
                "missing Content-Type: send the form as application/x-www-form-urlencoded",
            )),
            other => Err(ApiError::invalid_request(format!(
                "unsupported Content-Type {other:?}: send application/x-www-form-urlencoded"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urlencoded_body_decodes_plus_and_percent() {
        let form = OAuthForm::parse_urlencoded(b"username=al%C3%A9+x&password=p%26w&scope=").unwrap();
        assert_eq!(form.get("username"), Some("alé x"));
        assert_eq!(form.get("password"), Some("p&w"));
        assert_eq!(form.get("scope"), None);
    }

    #[test]
    fn json_error_details_never_echo_the_value() {
        let msg = "Failed to deserialize the JSON body: new_password: invalid type: string \"hunter22\", expected u32 at line 1";
        let clean = without_values(msg);
        assert!(!clean.contains("hunter22"), "{clean}");
        assert!(clean.contains("new_password: invalid type, expected u32"), "{clean}");
        assert_eq!(without_values("missing field `password`"), "missing field `password`");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        username: String,
        #[serde(default)]
        email: Option<String>,
    }

    #[test]
    fn a_json_body_must_be_an_object() {
        let pair: Object<Pair> = serde_json::from_str(r#"{"username": "alice"}"#).unwrap();
        assert_eq!((pair.0.username.as_str(), pair.0.email), ("alice", None));
        let Err(error) = serde_json::from_str::<Object<Pair>>(r#"["alice", "a@example.com"]"#) else {
            panic!("an array was taken for an object");
        };
        assert!(error.to_string().contains("expected a JSON object"), "{error}");
        assert!(serde_json::from_str::<Object<Pair>>(r#"{"username": "a", "scopes": []}"#).is_err());
        assert!(serde_json::from_str::<Object<Pair>>("null").is_err());
    }

    #[test]
    fn a_repeated_field_is_refused() {
        assert!(OAuthForm::parse_urlencoded(b"username=a&username=b").is_err());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(OAuthForm::parse_urlencoded(b"username=%FF%FE").is_err());
        assert!(OAuthForm::parse_urlencoded(b"username=\xff").is_err());
    }

    #[test]
    fn credentials_in_a_query_are_detected_even_encoded() {
        assert!(has_secret_in_query("username=a&password=b"));
        assert!(has_secret_in_query("pass%77ord=b"));
        assert!(!has_secret_in_query("next=/home"));
    }
}
