//! `/docs` and `/openapi.json`, and the probes.

use portcullis::http::docs::{LOGO_STYLE, content_security_policy};
use serde_json::Value;

use crate::helpers::{ADMIN_PASSWORD, spawn_app};

#[tokio::test]
async fn the_openapi_document_declares_the_password_flow_and_protected_routes() {
    let app = spawn_app().await;

    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();

    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let scheme = &doc["components"]["securitySchemes"]["OAuth2PasswordBearer"];
    assert_eq!(scheme["type"], "oauth2");
    let token_url = scheme["flows"]["password"]["tokenUrl"].as_str().unwrap();
    assert!(!token_url.starts_with('/') && !token_url.contains("://"), "relative: {token_url}");
    assert!(token_url.ends_with("token"));
    assert!(doc["paths"]["/users/me"]["get"]["security"].is_array());
    assert!(doc["paths"]["/token"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
}

#[tokio::test]
async fn the_user_list_takes_optional_query_parameters() {
    let app = spawn_app().await;

    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();

    let params = doc["paths"]["/admin/users"]["get"]["parameters"].as_array().unwrap();
    for name in ["limit", "cursor"] {
        let param = params.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(param["in"], "query", "{param}");
        assert_ne!(param["required"], true, "{param}");
    }
}

#[tokio::test]
async fn login_is_documented_as_the_same_endpoint_as_token() {
    let app = spawn_app().await;

    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();

    let (token, login) = (&doc["paths"]["/token"]["post"], &doc["paths"]["/login"]["post"]);
    assert_eq!(token["responses"], login["responses"]);
    assert_eq!(token["requestBody"], login["requestBody"]);
    assert_ne!(token["operationId"], login["operationId"], "operation ids stay unique");
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app().await;

    let index = app.get("/docs/", None).await;
    assert_eq!(index.status(), 200);
    let html = index.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(!html.contains("cdn") && !html.contains("unpkg"), "no CDN");

    let bundle = app.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.text().await.unwrap().len() > 100_000);

    let config = app.get("/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(config.contains("openapi.json"), "{config}");
}

#[tokio::test]
async fn swagger_ui_is_served_under_a_strict_content_security_policy() {
    let app = spawn_app().await;

    for path in ["/docs/", "/docs/swagger-initializer.js", "/docs/swagger-ui-bundle.js", "/docs/missing"] {
        let response = app.get(path, None).await;
        let headers = response.headers();
        let csp = headers.get("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP")).to_str().unwrap();
        assert_eq!(csp, content_security_policy(), "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    let csp = content_security_policy();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for expected in [
        "default-src 'self'",
        "script-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ] {
        assert!(directives.contains(&expected), "{expected} in {csp}");
    }
    assert!(!csp.contains("unsafe-"), "{csp}");
    // The one hash allows exactly the logo's style, as the served preset has it.
    assert!(csp.contains("style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"), "{csp}");
    let preset = app.get("/docs/swagger-ui-standalone-preset.js", None).await.text().await.unwrap();
    assert!(preset.contains(&format!("\"{LOGO_STYLE}\"")), "the preset's logo style changed");

    let config = app.get("/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(!config.contains("persistAuthorization"), "{config}");
}

/// Asserts the headers every credential-bearing answer needs.
fn assert_uncacheable(what: &str, response: &reqwest::Response) {
    let headers = response.headers();
    assert_eq!(headers.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{what}");
    assert_eq!(headers.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{what}");
}

#[tokio::test]
async fn token_and_user_answers_are_never_cached_nor_sniffed() {
    let app = spawn_app().await;

    let ok = app.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.status(), 200);
    assert_uncacheable("POST /token 200", &ok);
    let token = ok.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");

    let wrong = app.login("admin", "not-the-password").await;
    assert_eq!(wrong.status(), 401);
    assert_uncacheable("POST /token 401", &wrong);
    let bad = app.post_form("/token", "grant_type=nonsense").await;
    assert_eq!(bad.status(), 400);
    assert_uncacheable("POST /token 400", &bad);
    let get = app.get("/token", None).await;
    assert_eq!(get.status(), 405);
    assert_uncacheable("GET /token 405", &get);
    let login = app.post_form("/login", "username=admin").await;
    assert_eq!(login.status(), 400);
    assert_uncacheable("POST /login 400", &login);

    let me = app.me(&token).await;
    assert_eq!(me.status(), 200);
    assert_uncacheable("GET /users/me 200", &me);
    for (what, authorization, status) in
        [("no token", None, 401), ("bad token", Some("Bearer not.a.token"), 401), ("405", Some(bearer.as_str()), 405)]
    {
        let request = if status == 405 {
            app.client.delete(format!("{}/users/me", app.url))
        } else {
            app.client.get(format!("{}/users/me", app.url))
        };
        let request = match authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        assert_uncacheable(&format!("/users/me {what}"), &response);
    }

    // The other routes of the same groups, success and error alike.
    for (path, authorization, status) in [
        ("/user/current/", Some(bearer.as_str()), 200),
        ("/users/me/", None, 401),
        ("/admin/users", Some(bearer.as_str()), 200),
        ("/admin/users/nobody", Some(bearer.as_str()), 404),
        ("/admin/users", None, 401),
    ] {
        let response = app.get(path, authorization).await;
        assert_eq!(response.status(), status, "GET {path}");
        assert_uncacheable(&format!("GET {path} {status}"), &response);
    }
    let register = app.client.post(format!("{}/users", app.url)).json(&serde_json::json!({})).send().await.unwrap();
    assert_uncacheable(&format!("POST /users {}", register.status()), &register);
    let introspect = app.post_form("/token/introspect", &format!("token={token}")).await;
    assert_eq!(introspect.status(), 401);
    assert_uncacheable("POST /token/introspect 401", &introspect);
    let revoke = app.post_form("/token/revoke", "").await;
    assert_uncacheable(&format!("POST /token/revoke {}", revoke.status()), &revoke);
    let logout = app.client.post(format!("{}/logout", app.url)).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_uncacheable("POST /logout 204", &logout);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;

    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

#[tokio::test]
async fn every_operation_documents_the_answers_any_route_of_its_kind_gives() {
    let app = spawn_app().await;

    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();

    assert_eq!(doc["components"]["schemas"]["Error"]["required"], serde_json::json!(["detail"]));
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let responses = &operation["responses"];
            assert!(responses["408"].is_object(), "{what}: 408");
            assert!(responses["408"].get("content").is_none(), "{what}: the 408 is empty");
            let body = &operation["requestBody"]["content"];
            let bearer = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if body.is_object() {
                for status in ["400", "413", "503"] {
                    assert!(responses[status].is_object(), "{what}: {status}");
                }
            }
            if body["application/json"].is_object() {
                for status in ["415", "422"] {
                    assert!(responses[status].is_object(), "{what}: {status}");
                }
            }
            if bearer {
                assert_eq!(responses["401"]["headers"]["WWW-Authenticate"]["required"], true, "{what}");
                assert_eq!(responses["503"]["headers"]["Retry-After"]["required"], true, "{what}");
            }
            for (status, response) in responses.as_object().unwrap() {
                if (status.starts_with('4') && status != "408") || status.starts_with('5') {
                    assert!(response["content"]["application/json"]["schema"].is_object(), "{what}: {status} body");
                }
            }
        }
    }
}
