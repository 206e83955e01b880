//! The admin API on the admin port (`/api/v1/…`, JSON): the server's status and its accounts —
//! list, create, change a password, delete — for operators and their tools while the server runs
//! (the embedded store has one writer: the running server). Every request needs
//! `Authorization: Bearer TOKEN`, the token in `[admin] token_file` (default `admin.token` in the
//! data directory, generated at the first start, readable by the server's user only). Bad input
//! gets a clear status and `{"error": "…"}`: no token 401, a wrong one 403, malformed JSON or an
//! address that is not an account here 400, an unknown account 404, an existing one 409, a body
//! over 64 KiB 413.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use starling_cluster::store::{ScramCredentials, Store, StoreError, DEFAULT_SCRAM_ITERATIONS};
use starling_telemetry::Metrics;

use crate::config::{Config, Role};

/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct AdminApi {
    token: Arc<str>,
    store: Store,
    config: Arc<Config>,
    node: Arc<str>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl AdminApi {
    pub fn new(config: &Config, node: &str, store: Store, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> anyhow::Result<AdminApi> {
        let token = token(config)?;
        Ok(AdminApi { token: token.into(), store, config: Arc::new(config.clone()), node: node.into(), metrics, ready })
    }

    pub fn routes(self) -> Router {
        Router::new()
            .route("/api/v1/status", get(status))
            .route("/api/v1/users", get(list_users).post(create_user))
            .route("/api/v1/users/{user}", delete(remove_user))
            .route("/api/v1/users/{user}/password", put(set_password))
            .layer(middleware::from_fn_with_state(self.clone(), authorize))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

/// The API token: `[admin] token_file`, or `admin.token` in the data directory, created with 32
/// random bytes (as hex) when it does not exist yet. The CLI reads the same file.
pub fn token(config: &Config) -> anyhow::Result<String> {
    let path = token_path(config);
    match std::fs::read_to_string(&path) {
        Ok(token) if token.trim().len() >= 32 => return Ok(token.trim().to_owned()),
        Ok(_) => anyhow::bail!("admin token {}: shorter than 32 characters", path.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && config.admin.token_file.is_empty() => {}
        Err(error) => return Err(error).with_context(|| format!("reading the admin token {}", path.display())),
    }
    let token: String = rand::random::<[u8; 32]>().iter().map(|byte| format!("{byte:02x}")).collect();
    std::fs::create_dir_all(&config.server.data_dir)?;
    starling_edge::write_private(&path, token.as_bytes()).with_context(|| format!("writing the admin token {}", path.display()))?;
    Ok(token)
}

/// Where the token is read (and, when no file is configured, generated).
pub fn token_path(config: &Config) -> std::path::PathBuf {
    match config.admin.token_file.as_str() {
        "" => config.server.data_dir.join("admin.token"),
        given => given.into(),
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json_answer(status, json!({ "error": message.to_string() }))
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A store that cannot be reached is a try-again (503, Retry-After); anything else a 500.
fn store_error(cause: StoreError) -> Response {
    let unavailable = matches!(cause, StoreError::Unavailable(_));
    let mut response = error(if unavailable { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR }, cause);
    if unavailable {
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    response
}

/// Equal without telling, by its timing, how much of a guess was right.
fn same_secret(given: &str, token: &str) -> bool {
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0
}

async fn authorize(State(api): State<AdminApi>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let given = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| value.strip_prefix("Bearer "));
    match given {
        None => {
            let mut response = error(StatusCode::UNAUTHORIZED, "Authorization: Bearer TOKEN needed ([admin] token_file)");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            response
        }
        Some(given) if same_secret(given.trim(), &api.token) => next.run(request).await,
        Some(_) => error(StatusCode::FORBIDDEN, "wrong token"),
    }
}

async fn status(State(api): State<AdminApi>) -> Response {
    let role = match api.config.cluster.role {
        Role::All => "all",
        Role::Edge => "edge",
        Role::Session => "session",
    };
    json_answer(
        StatusCode::OK,
        json!({
            "domain": api.config.server.domain,
            "role": role,
            "node": &*api.node,
            "version": env!("CARGO_PKG_VERSION"),
            "ready": api.ready.load(Ordering::Acquire),
            "connections_open": api.metrics.connections_open.get(),
            "sessions_bound": api.metrics.sessions_bound.get(),
            "owned_partitions": api.metrics.owned_partitions.get(),
        }),
    )
}

/// The account `user` names (a localpart or a bare JID of this domain), or a 400.
fn account(api: &AdminApi, user: &str) -> Result<String, Response> {
    crate::users::account(&api.config, user).map(|jid| jid.to_string()).map_err(|why| error(StatusCode::BAD_REQUEST, why))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    user: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// The request's JSON; a body that could not be read (over the limit: 413) or parsed, an error.
fn parse<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, Response> {
    let body = body.map_err(|rejection| error(rejection.status(), rejection.body_text()))?;
    serde_json::from_slice(&body).map_err(|why| error(StatusCode::BAD_REQUEST, format!("malformed JSON: {why}")))
}

fn credentials(password: &str) -> Result<ScramCredentials, Response> {
    if password.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "empty password"));
    }
    Ok(ScramCredentials::derive(password, DEFAULT_SCRAM_ITERATIONS))
}

async fn list_users(State(api): State<AdminApi>) -> Response {
    match api.store.accounts.list().await {
        Ok(users) => json_answer(StatusCode::OK, json!({ "users": users })),
        Err(why) => store_error(why),
    }
}

async fn create_user(State(api): State<AdminApi>, body: Result<Bytes, BytesRejection>) -> Response {
    let created = async {
        let request: NewAccount = parse(body)?;
        let jid = account(&api, &request.user)?;
        let credentials = credentials(&request.password)?;
        match api.store.accounts.create(&jid, credentials).await {
            Ok(()) => Ok(json_answer(StatusCode::CREATED, json!({ "jid": jid }))),
            Err(StoreError::Conflict) => Err(error(StatusCode::CONFLICT, format!("{jid} exists"))),
            Err(why) => Err(store_error(why)),
        }
    };
    created.await.unwrap_or_else(|refused| refused)
}

async fn set_password(State(api): State<AdminApi>, Path(user): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let changed = async {
        let jid = account(&api, &user)?;
        let request: NewPassword = parse(body)?;
        match api.store.accounts.set_credentials(&jid, credentials(&request.password)?).await {
            Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
            Ok(false) => Err(error(StatusCode::NOT_FOUND, format!("{jid}: no such account"))),
            Err(why) => Err(store_error(why)),
        }
    };
    changed.await.unwrap_or_else(|refused| refused)
}

/// Deletes the account and everything stored for it. Sessions it has open are not ended here
/// (issue 18's session API): they end at their next login attempt.
async fn remove_user(State(api): State<AdminApi>, Path(user): Path<String>) -> Response {
    let jid = match account(&api, &user) {
        Ok(jid) => jid,
        Err(refused) => return refused,
    };
    match api.store.remove_user(&jid).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("{jid}: no such account")),
        Err(why) => store_error(why),
    }
}
