//! Bad input: always a 4xx with a `detail` saying what to fix.

use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, spawn_app};

async fn detail(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_missing_field_is_an_invalid_request_naming_it() {
    let app = spawn_app().await;

    let (status, body) = detail(app.post_form("/token", "username=admin").await).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert!(body["detail"].as_str().unwrap().contains("password"), "{body}");
}

#[tokio::test]
async fn an_unknown_grant_type_is_unsupported() {
    let app = spawn_app().await;

    let (status, body) = detail(app.post_form("/token", "grant_type=implicit&username=a&password=b").await).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn json_sent_to_the_form_endpoint_is_explained() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(format!("{}/token", app.url))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let (status, body) = detail(response).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert!(body["detail"].as_str().unwrap().contains("x-www-form-urlencoded"), "{body}");
}

#[tokio::test]
async fn a_body_without_content_type_is_explained() {
    let app = spawn_app().await;

    let response = app.client.post(format!("{}/token", app.url)).body("username=a&password=b").send().await.unwrap();
    let (status, body) = detail(response).await;

    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("Content-Type"), "{body}");
}

#[tokio::test]
async fn invalid_utf8_in_the_form_is_refused() {
    let app = spawn_app().await;

    for body in [&b"username=%FF%FE&password=x"[..], &b"username=\xff\xfe&password=x"[..]] {
        let response = app
            .client
            .post(format!("{}/token", app.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let (status, body) = detail(response).await;
        assert_eq!(status, 400);
        assert!(body["detail"].as_str().unwrap().contains("UTF-8"), "{body}");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let big = format!("username=admin&password={}", "x".repeat(70 * 1024));

    let (status, body) = detail(app.post_form("/token", &big).await).await;

    assert_eq!(status, 413);
    assert!(body["detail"].as_str().unwrap().contains("64 KiB"), "{body}");
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_is_413_too() {
    let app = spawn_app().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..80).map(|i| Ok(if i == 0 { b"username=admin&password=".to_vec() } else { vec![b'x'; 1024] })).collect();
    let stream = futures_stream(chunks);

    let response = app
        .client
        .post(format!("{}/token", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 413);
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(chunks.into_iter())
}

#[tokio::test]
async fn credentials_in_the_query_string_are_refused() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(format!("{}/token?username=admin&password={ADMIN_PASSWORD}", app.url))
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    let (status, body) = detail(response).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert!(!body.to_string().contains(ADMIN_PASSWORD));
}

#[tokio::test]
async fn a_repeated_parameter_is_refused() {
    let app = spawn_app().await;

    let (status, body) = detail(app.post_form("/token", "username=admin&username=root&password=x").await).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn a_malformed_scope_is_invalid_scope() {
    let app = spawn_app().await;

    let body = format!("username=admin&password={ADMIN_PASSWORD}&scope=%22admin%22");
    let (status, body) = detail(app.post_form("/token", &body).await).await;

    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn_app().await;

    let (status, body) = detail(app.get("/nope", None).await).await;
    assert_eq!((status, body["detail"].as_str()), (404, Some("Not Found")));

    let (status, body) = detail(app.get("/token", None).await).await;
    assert_eq!((status, body["detail"].as_str()), (405, Some("Method Not Allowed")));
}

#[tokio::test]
async fn a_nul_byte_or_control_character_in_a_username_is_just_wrong() {
    let app = spawn_app().await;

    for body in
        ["username=%00&password=whatever-1", "username=adm%00in&password=whatever-1", "username=%01%7F&password=x"]
    {
        let (status, body) = detail(app.post_form("/token", body).await).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }
    let admin = app.access_token("admin", ADMIN_PASSWORD).await;
    assert_eq!(app.get("/admin/users/a%00b", Some(&format!("Bearer {admin}"))).await.status(), 404);
    assert_eq!(app.get("/admin/users?cursor=AA", Some(&format!("Bearer {admin}"))).await.status(), 400);
}

#[tokio::test]
async fn a_very_long_username_or_password_is_just_wrong() {
    let app = spawn_app().await;

    let long = "u".repeat(10_000);
    assert_eq!(app.login(&long, "whatever-password").await.status(), 401);
    // Does not compress: a database index would refuse it.
    let noisy: String = (0..5_000).map(|i| char::from(b'a' + ((i * 7919) % 26) as u8)).collect();
    assert_eq!(app.login(&noisy, "whatever-password").await.status(), 401);
    assert_eq!(app.login("admin", &"p".repeat(20_000)).await.status(), 401);
}

#[tokio::test]
async fn a_json_body_must_be_an_object_not_its_fields_in_order() {
    let app = spawn_app().await;
    let token = app.access_token("admin", ADMIN_PASSWORD).await;
    let patch = |body: &'static str| {
        app.client
            .patch(format!("{}/users/me", app.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, _) = detail(patch(r#"{"full_name": "Ada"}"#).await.unwrap()).await;
    assert_eq!(status, 200);

    // serde would take `[email, full_name]` for the struct: found by schemathesis.
    for body in [r#"[null, null]"#, r#"["a@example.com", "Eve"]"#, "null", "1"] {
        let (status, body) = detail(patch(body).await.unwrap()).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["detail"].as_str().unwrap().contains("expected a JSON object"), "{body}");
    }
    let profile: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(profile["full_name"], "Ada", "unchanged: {profile}");
}
