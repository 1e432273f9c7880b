//! Client administration under `/admin/clients`; every route needs scope
//! `admin`. A secret is returned once, when it is made (create, rotate),
//! and never again.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::input::{ApiJson, ApiPath};
use super::shared::nullable;
use crate::auth::clients;
use crate::clock::UnixTime;
use crate::domain::{Scopes, UserKey, Username};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Client, ClientPatch, StoreError};

/// The client routes, behind a scope check.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clients, create_client))
        .routes(routes!(get_client, update_client, delete_client))
        .routes(routes!(rotate_secret))
        .route_layer(state.verifier().require_scopes(["admin"]))
}

/// A client as the admin API and `client list --json` show it: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientInfo {
    /// The id, as registered (the `sub` and `client_id` of its tokens).
    pub client_id: String,
    /// The scopes it may be granted.
    pub scopes: Vec<String>,
    /// What it is, for people.
    pub description: Option<String>,
    /// A disabled client cannot authenticate and its tokens stop working.
    pub disabled: bool,
    /// When it was registered (Unix seconds).
    pub created_at: UnixTime,
}

impl From<&Client> for ClientInfo {
    fn from(c: &Client) -> Self {
        ClientInfo {
            client_id: c.client_id.as_str().to_owned(),
            scopes: c.scopes.to_vec(),
            description: c.description.clone(),
            disabled: c.disabled,
            created_at: c.created_at,
        }
    }
}

/// A client with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct ClientWithSecret {
    /// The id.
    client_id: String,
    /// The secret: keep it now, it is stored only as a hash.
    client_secret: String,
    /// The scopes it may be granted.
    scopes: Vec<String>,
    /// What it is, for people.
    description: Option<String>,
    /// Whether it is disabled.
    disabled: bool,
    /// When it was registered (Unix seconds).
    created_at: UnixTime,
}

impl ClientWithSecret {
    fn new(client: &Client, secret: String) -> Self {
        let info = ClientInfo::from(client);
        ClientWithSecret {
            client_id: info.client_id,
            client_secret: secret,
            scopes: info.scopes,
            description: info.description,
            disabled: info.disabled,
            created_at: info.created_at,
        }
    }
}

/// All clients.
#[derive(Serialize, ToSchema)]
pub struct ClientList {
    /// In id order.
    clients: Vec<ClientInfo>,
}

/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 500;

/// A description as stored: trimmed, empty is none, at most
/// [`MAX_DESCRIPTION`] characters, no control characters.
///
/// # Errors
/// What is wrong with it.
pub fn parse_description(raw: Option<String>) -> Result<Option<String>, crate::domain::Invalid> {
    let Some(raw) = raw else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.chars().count() > MAX_DESCRIPTION {
        return Err(crate::domain::Invalid(format!("description: at most {MAX_DESCRIPTION} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(crate::domain::Invalid("description: no control characters (line breaks, tabs…)".into()));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// A client id for a new client: a username's rules (one namespace).
///
/// # Errors
/// What is wrong with it.
pub fn parse_client_id(raw: &str) -> Result<Username, crate::domain::Invalid> {
    Username::parse(raw).map_err(|e| crate::domain::Invalid(format!("client_id: {}", e.0)))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no client with id {id:?}"))
}

fn key_in_path(id: &str) -> ApiResult<UserKey> {
    Username::lookup_key(id).ok_or_else(|| not_found(id))
}

/// Every client.
#[utoipa::path(
    get, path = "/admin/clients", tag = "admin",
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 200, description = "All clients, without secrets", body = ClientList),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
    )
)]
#[instrument(skip_all)]
pub async fn list_clients(State(state): State<AppState>) -> ApiResult<Json<ClientList>> {
    let clients = state.store.list_clients().await?;
    Ok(Json(ClientList { clients: clients.iter().map(ClientInfo::from).collect() }))
}

/// A client to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClientRequest {
    /// The id: a username's rules, and unique among users *and* clients
    /// (ignoring case and width, and lookalikes), since it is the `sub` of
    /// the client's tokens.
    #[schema(value_type = super::document::Username)]
    client_id: String,
    /// Scopes the client may be granted (`introspect` lets it introspect).
    #[serde(default)]
    #[schema(value_type = Vec<super::document::ScopeName>)]
    scopes: Vec<String>,
    /// What it is, for people (at most 500 characters).
    #[serde(default)]
    #[schema(max_length = 500)]
    description: Option<String>,
}

/// Registers a client; its secret is in the answer, and only there.
#[utoipa::path(
    post, path = "/admin/clients", tag = "admin",
    security(("OAuth2PasswordBearer" = ["admin"])),
    request_body = NewClientRequest,
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = ClientWithSecret),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 409, description = "A user or client has this name, or one that looks like it"),
        (status = 422, description = "A field breaks a rule"),
    )
)]
#[instrument(skip_all)]
pub async fn create_client(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<NewClientRequest>,
) -> ApiResult<(StatusCode, Json<ClientWithSecret>)> {
    let client_id = parse_client_id(&request.client_id)?;
    let scopes = Scopes::from_names(&request.scopes)?;
    let description = parse_description(request.description)?;
    let (client, secret) = register(&state, client_id, scopes, description).await?;
    Ok((StatusCode::CREATED, Json(ClientWithSecret::new(&client, secret))))
}

/// Stores a new client, mapping a taken name to `409`.
async fn register(
    state: &AppState,
    client_id: Username,
    scopes: Scopes,
    description: Option<String>,
) -> ApiResult<(Client, String)> {
    match clients::register(&state.store, client_id, scopes, description, state.clock.now()).await {
        Ok(made) => Ok(made),
        Err(StoreError::Conflict) => Err(ApiError::Conflict("a user or client already has this name".into())),
        Err(StoreError::Confusable) => {
            Err(ApiError::Conflict("client_id looks like an existing user's or client's name".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// One client.
#[utoipa::path(
    get, path = "/admin/clients/{client_id}", tag = "admin",
    params(("client_id" = String, Path, description = "Client id (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 200, description = "The client, without its secret", body = ClientInfo),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such client"),
    )
)]
#[instrument(skip_all)]
pub async fn get_client(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<ClientInfo>> {
    let key = key_in_path(&id)?;
    let client = state.store.client_by_key(&key).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(ClientInfo::from(&client)))
}

/// Changes to a client; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatchRequest {
    /// New scopes (replaces them all). Live tokens claiming a scope taken
    /// away stop working.
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::document::ScopeName>>)]
    scopes: Option<Vec<String>>,
    /// New description, or null.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 500)]
    description: Option<Option<String>>,
    /// Disable (its live tokens stop working at once, for good) or enable.
    #[serde(default)]
    disabled: Option<bool>,
}

/// Changes a client.
#[utoipa::path(
    patch, path = "/admin/clients/{client_id}", tag = "admin",
    params(("client_id" = String, Path, description = "Client id (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    request_body = ClientPatchRequest,
    responses(
        (status = 200, description = "The updated client", body = ClientInfo),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such client"),
        (status = 422, description = "A field breaks a rule"),
    )
)]
#[instrument(skip_all)]
pub async fn update_client(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(change): ApiJson<ClientPatchRequest>,
) -> ApiResult<Json<ClientInfo>> {
    let patch = ClientPatch {
        scopes: change.scopes.map(Scopes::from_names).transpose()?,
        description: change.description.map(parse_description).transpose()?,
        disabled: change.disabled,
        // Disabling ends its tokens for good: enabling again does not
        // bring them back.
        generation: (change.disabled == Some(true)).then(clients::new_generation),
        ..ClientPatch::default()
    };
    let key = key_in_path(&id)?;
    let client = state.store.update_client(&key, &patch, state.clock.now()).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(ClientInfo::from(&client)))
}

/// Deletes a client; its live tokens stop working at once.
#[utoipa::path(
    delete, path = "/admin/clients/{client_id}", tag = "admin",
    params(("client_id" = String, Path, description = "Client id (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such client"),
    )
)]
#[instrument(skip_all)]
pub async fn delete_client(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    if state.store.delete_client(&key_in_path(&id)?, state.clock.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// How to rotate a client's secret.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Also end every token issued to the client so far (a leaked secret).
    /// Default false: live tokens run out on their own.
    #[serde(default)]
    revoke_tokens: bool,
}

/// Gives a client a new secret (the old one stops working at once); the new
/// secret is in the answer, and only there.
#[utoipa::path(
    post, path = "/admin/clients/{client_id}/secret", tag = "admin",
    params(("client_id" = String, Path, description = "Client id (any case)")),
    security(("OAuth2PasswordBearer" = ["admin"])),
    request_body = RotateRequest,
    responses(
        (status = 200, description = "The client with its new secret, shown this once", body = ClientWithSecret),
        (status = 401, description = "Missing, invalid or expired token"),
        (status = 403, description = "The caller lacks scope admin"),
        (status = 404, description = "No such client"),
    )
)]
#[instrument(skip_all)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<RotateRequest>,
) -> ApiResult<Json<ClientWithSecret>> {
    let key = key_in_path(&id)?;
    let rotated = clients::rotate(&state.store, &key, request.revoke_tokens, state.clock.now()).await?;
    let (client, secret) = rotated.ok_or_else(|| not_found(&id))?;
    Ok(Json(ClientWithSecret::new(&client, secret)))
}
