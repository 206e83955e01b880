//! The admin API on the admin port (`/api/v1/…`, JSON): the server's status; its accounts —
//! list, create, change a password, delete (which ends the account's streams) — for operators and
//! their tools while the server runs (the embedded store has one writer: the running server);
//! sessions — list those served here, end a user's (or one resource's) — and messages from the
//! server: to one user, or an announcement to every user online here. Every request needs
//! `Authorization: Bearer TOKEN`, the token in `[admin] token_file` (default `admin.token` in the
//! data directory, generated at the first start, readable by the server's user only). Bad input
//! gets a clear status and `{"error": "…"}`: no token 401, a wrong one 403, malformed JSON or an
//! address that is not an account here 400, an unknown account 404, an existing one 409, a body
//! over 64 KiB 413; asking an edge for what only the processes serving sessions know (the list,
//! announcements) 421.
//!
//! In a cluster every node answers: orders and messages travel to the user's owner like any
//! stanza; a session node lists and announces to the users of its own partitions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use starling_cluster::gateway::{Gateway, GatewayError};
use starling_cluster::store::{ScramCredentials, Store, StoreError, DEFAULT_SCRAM_ITERATIONS};
use starling_protocol::{ns, Jid, Stanza};
use starling_session::{end_sessions_order, EndReason, SessionLayer};
use starling_xml::Element;
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
    /// Where the server's own stanzas go (to the user's owner, wherever it is).
    gateway: Arc<dyn Gateway>,
    /// The session layer, on processes that serve sessions.
    sessions: Option<SessionLayer>,
}

/// What the admin API reaches besides the store.
pub struct Reach {
    pub gateway: Arc<dyn Gateway>,
    pub sessions: Option<SessionLayer>,
}

impl AdminApi {
    pub fn new(config: &Config, node: &str, store: Store, metrics: Arc<Metrics>, ready: Arc<AtomicBool>, reach: Reach) -> anyhow::Result<AdminApi> {
        let token = token(config)?;
        let Reach { gateway, sessions } = reach;
        Ok(AdminApi { token: token.into(), store, config: Arc::new(config.clone()), node: node.into(), metrics, ready, gateway, sessions })
    }

    pub fn routes(self) -> Router {
        Router::new()
            .route("/api/v1/status", get(status))
            .route("/api/v1/users", get(list_users).post(create_user))
            .route("/api/v1/users/{user}", delete(remove_user))
            .route("/api/v1/users/{user}/password", put(set_password))
            .route("/api/v1/users/{user}/sessions", delete(end_sessions))
            .route("/api/v1/sessions", get(list_sessions))
            .route("/api/v1/messages", post(send_message))
            .route("/api/v1/announcements", post(announce))
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
            "hosts": api.config.hosts.keys().collect::<Vec<_>>(),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfDomain {
    domain: Option<String>,
}

/// The accounts, of every served domain or of `?domain=`.
async fn list_users(State(api): State<AdminApi>, of: Result<Query<OfDomain>, QueryRejection>) -> Response {
    let Ok(Query(OfDomain { domain })) = of else { return error(StatusCode::BAD_REQUEST, "the only parameter is domain") };
    if let Some(Err(why)) = domain.as_deref().map(|domain| crate::users::served(&api.config, domain)) {
        return error(StatusCode::NOT_FOUND, why);
    }
    match api.store.accounts.list().await {
        Ok(mut users) => {
            if let Some(domain) = domain {
                users.retain(|user| crate::users::on_domain(user, &domain));
            }
            json_answer(StatusCode::OK, json!({ "users": users }))
        }
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

/// Deletes the account and everything stored for it, and ends its streams (`not-authorized`).
async fn remove_user(State(api): State<AdminApi>, Path(user): Path<String>) -> Response {
    let jid = match account(&api, &user) {
        Ok(jid) => jid,
        Err(refused) => return refused,
    };
    match api.store.remove_user(&jid).await {
        Ok(true) => {
            if let Err(why) = api.order_end(&jid, None, EndReason::AccountRemoved) {
                tracing::warn!(%jid, %why, "account deleted; its streams end at their next stanza");
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("{jid}: no such account")),
        Err(why) => store_error(why),
    }
}

impl AdminApi {
    /// Sends the server's order (from the user's own domain) to end `user`'s streams (one
    /// resource's, when named).
    fn order_end(&self, user: &str, resource: Option<&str>, reason: EndReason) -> Result<(), GatewayError> {
        let user = Jid::new(user).map_err(|_| GatewayError::Unavailable("invalid JID".into()))?;
        self.gateway.route_vouched(end_sessions_order(&user.domain_jid(), &user, resource, reason))
    }

    fn sessions(&self) -> Result<&SessionLayer, Response> {
        self.sessions.as_ref().ok_or_else(|| error(StatusCode::MISDIRECTED_REQUEST, "ask a process that serves sessions (role all or session): this one is an edge"))
    }
}

fn unreachable(why: GatewayError) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, why);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Which {
    resource: Option<String>,
}

/// Ends a user's streams (or one resource's) with `policy-violation`, wherever they are served;
/// 202: the order is on its way. Stream-managed clients may log in again at once.
async fn end_sessions(State(api): State<AdminApi>, Path(user): Path<String>, which: Result<Query<Which>, QueryRejection>) -> Response {
    let jid = match account(&api, &user) {
        Ok(jid) => jid,
        Err(refused) => return refused,
    };
    let Ok(Query(Which { resource })) = which else { return error(StatusCode::BAD_REQUEST, "the only parameter is resource") };
    match api.order_end(&jid, resource.as_deref(), EndReason::Ended) {
        Ok(()) => json_answer(StatusCode::ACCEPTED, json!({ "jid": jid, "resource": resource })),
        Err(why) => unreachable(why),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Listing {
    limit: Option<usize>,
    domain: Option<String>,
}

/// The bound resources of the users served here (at most `limit` users, default 1,000), of one
/// served domain with `domain`.
async fn list_sessions(State(api): State<AdminApi>, listing: Result<Query<Listing>, QueryRejection>) -> Response {
    let layer = match api.sessions() {
        Ok(layer) => layer,
        Err(refused) => return refused,
    };
    let Ok(Query(Listing { limit, domain })) = listing else { return error(StatusCode::BAD_REQUEST, "the parameters are limit, a number, and domain") };
    if let Some(Err(why)) = domain.as_deref().map(|domain| crate::users::served(&api.config, domain)) {
        return error(StatusCode::NOT_FOUND, why);
    }
    let (resources, truncated) = layer.sessions(limit.unwrap_or(1000)).await;
    let sessions: Vec<_> = resources
        .iter()
        .filter(|resource| domain.as_deref().is_none_or(|domain| resource.jid.domain() == domain))
        .map(|resource| json!({ "jid": resource.jid.as_str(), "connected": resource.connected, "available": resource.available, "priority": resource.priority, "edge": resource.edge }))
        .collect();
    json_answer(StatusCode::OK, json!({ "node": &*api.node, "sessions": sessions, "truncated": truncated }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    to: String,
    body: String,
    subject: Option<String>,
    #[serde(rename = "type", default = "normal")]
    kind: String,
}

fn normal() -> String {
    "normal".into()
}

/// A message from the user's domain to one user (a bare JID: by its rules, RFC 6121 §8.5;
/// or one resource); stored offline like any when the user is away (except a headline).
async fn send_message(State(api): State<AdminApi>, body: Result<Bytes, BytesRejection>) -> Response {
    let sent = async {
        let request: Message = parse(body)?;
        let to = match request.to.split_once('/') {
            Some((bare, resource)) => account(&api, bare).and_then(|bare| Jid::new(&format!("{bare}/{resource}")).map_err(|why| error(StatusCode::BAD_REQUEST, why)))?,
            None => Jid::new(&account(&api, &request.to)?).map_err(|why| error(StatusCode::BAD_REQUEST, why))?,
        };
        if !matches!(request.kind.as_str(), "normal" | "chat" | "headline") || request.body.is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "a message needs a body, and a type of normal, chat or headline"));
        }
        let mut message = Element::new("message", ns::CLIENT).with_attr("type", &request.kind);
        if let Some(subject) = &request.subject {
            message.push_child(Element::new("subject", ns::CLIENT).with_text(subject));
        }
        message.push_child(Element::new("body", ns::CLIENT).with_text(&request.body));
        api.gateway.route_vouched(Stanza::build(message, &to.domain_jid(), Some(&to))).map_err(unreachable)?;
        Ok(json_answer(StatusCode::ACCEPTED, json!({ "to": to.as_str() })))
    };
    sent.await.unwrap_or_else(|refused| refused)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    body: String,
    subject: Option<String>,
    /// Only to the users of this served domain.
    domain: Option<String>,
}

/// A headline to every user online here, or to those of one served domain (in a cluster: ask each
/// session node).
async fn announce(State(api): State<AdminApi>, body: Result<Bytes, BytesRejection>) -> Response {
    let announced = async {
        let layer = api.sessions()?;
        let request: Announcement = parse(body)?;
        if request.body.is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "an announcement needs a body"));
        }
        if let Some(Err(why)) = request.domain.as_deref().map(|domain| crate::users::served(&api.config, domain)) {
            return Err(error(StatusCode::NOT_FOUND, why));
        }
        let users = layer.announce(request.subject.as_deref(), &request.body, request.domain.as_deref()).await;
        Ok(json_answer(StatusCode::OK, json!({ "node": &*api.node, "users": users })))
    };
    announced.await.unwrap_or_else(|refused| refused)
}
