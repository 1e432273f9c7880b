//! `/docs` and `/openapi.json`, and the probes.

use serde_json::Value;

use crate::helpers::spawn_app;

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
async fn health_and_readiness_answer() {
    let app = spawn_app().await;

    assert_eq!(app.get("/healthz", None).await.status(), 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}
