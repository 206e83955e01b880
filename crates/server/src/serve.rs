//! `starling serve`: every role in one process (the default), or one role of a cluster: `edge`
//! (client connections, reaching sessions over Kafka) or `session` (actors for the owner
//! partitions Kafka's group assigns to this node).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use starling_edge::{load_secret_key, Edge, EdgeBackends, EdgeConfig, FastKey};
use starling_protocol::{Hosts, Jid};
use starling_s2s::Federation;
use starling_session::{inline_features, SessionConfig, SessionLayer};
use starling_edge::{CertificateSource, Certificates};
use starling_telemetry::traces::{TraceExport, TraceSettings};
use starling_telemetry::Metrics;
use starling_upload::{FileStore, Upload};
use tokio::net::TcpListener;

use starling_backend_kafka::{KafkaBus, KafkaConfig};
use starling_backend_redis::RedisRegistry;
use starling_cluster::bus::Bus;
use starling_cluster::bus_gateway::{BusGateway, SessionFeatures};
use starling_cluster::envelope::Origin;
use starling_cluster::failure_counts::{FailureCounts, LocalFailureCounts};
use starling_cluster::liveness;
use starling_cluster::registry::Registry;
use starling_cluster::gateway::Gateway;

use crate::config::{ClusterSection, Config, Role};

/// A session node without partitions is ready after twice its session timeout; one left for the
/// bus to choose is at most this long with stock brokers (their minimum, 6 s, or 10 s unread).
const LONGEST_CHOSEN_SESSION_TIMEOUT_MS: u64 = 10_000;

pub fn run(config: Config) -> anyhow::Result<()> {
    // Actors live on actix arbiters; sockets and storage I/O run on the multi-threaded tokio pool.
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
    })
    .block_on(serve(config))
}

/// Each client holds a descriptor: take the whole hard limit (the soft default is often 1024).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(error) => tracing::warn!(%error, soft, "could not raise the open-file limit"),
        },
        Ok((soft, _)) => tracing::info!(limit = soft, "open-file limit (bounds concurrent connections)"),
        Err(error) => tracing::warn!(%error, "could not read the open-file limit"),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    raise_fd_limit();
    let hosts = config.hosts()?;
    let domain = hosts.primary().clone();
    let metrics = Metrics::global();
    let store = crate::store::open(&config).await?;
    tracing::info!(backend = ?config.store.backend, "store open");
    let (accounts, fast_tokens) = (store.accounts.clone(), store.fast_tokens.clone());
    let admin_store = store.clone();
    let role = config.cluster.role;
    let node = node_id(&config.cluster);
    tracing::info!(?role, %node, "role");
    let traces = export_traces(&config, &node, role)?;
    // Authentication failures are counted where every edge sees them: in Redis in a cluster.
    let mut failure_counts: Arc<dyn FailureCounts> = Arc::new(LocalFailureCounts::default());
    // The gateway the edge binds clients through: the local session layer, or the bus.
    let mut sessions = None;
    let mut owner_partitions = None;
    let mut edge_inbox = None;
    let gateway: Option<Arc<dyn Gateway>> = match role {
        Role::All => {
            let layer = SessionLayer::start(hosts.clone(), store, session_config(&config), metrics.clone());
            sessions = Some(layer.clone());
            Some(Arc::new(layer))
        }
        Role::Session => {
            let bus = connect_bus(&config.cluster).await?;
            let registry = connect_registry(&config.cluster).await?;
            let layer = SessionLayer::start(hosts.clone(), store, session_config(&config), metrics.clone());
            sessions = Some(layer.clone());
            let node = node.clone();
            let ttl = node_ttl(&config.cluster);
            owner_partitions = Some(tokio::spawn(async move { layer.serve_owner_partitions(bus, registry, node, ttl).await }));
            None
        }
        Role::Edge => {
            let bus = connect_bus(&config.cluster).await?;
            let registry = connect_registry(&config.cluster).await?;
            // Resources an earlier process of this node left behind are gone with its sockets.
            liveness::reap(registry.as_ref(), bus.as_ref(), &Origin::new(&node), &node).await;
            failure_counts = registry.clone();
            tokio::spawn(liveness::keep_alive(registry, node.clone(), node_ttl(&config.cluster), || {}));
            // The edge announces what the session nodes apply; both read the same configuration.
            let features = SessionFeatures {
                stream_management: config.sm.enabled,
                inline: inline_features(&hosts, &session_config(&config)),
                max_unacked: config.sm.max_unacked,
            };
            let gateway = BusGateway::start(&node, bus, features).await.context("opening this edge's inbox")?;
            edge_inbox = Some(gateway.clone());
            Some(Arc::new(gateway))
        }
    };

    let ready = Arc::new(AtomicBool::new(false));
    let admin = TcpListener::bind(&config.admin.listen).await.with_context(|| format!("binding admin {}", config.admin.listen))?;
    tracing::info!(listen = %config.admin.listen, "admin HTTP: /metrics /healthz /readyz");
    // The server's own stanzas (the API's orders and messages) go where a client's would.
    let vouching: Arc<dyn Gateway> = match (&gateway, &sessions) {
        (Some(gateway), _) => gateway.clone(),
        (None, Some(layer)) => Arc::new(layer.clone()),
        (None, None) => unreachable!("every role has a gateway or a session layer"),
    };
    let reach = crate::admin_api::Reach { gateway: vouching, sessions: sessions.clone() };
    let api = crate::admin_api::AdminApi::new(&config, &node, admin_store, metrics.clone(), ready.clone(), reach)?;
    tokio::spawn(crate::admin::serve(admin, metrics.clone(), ready.clone(), api));

    let mut edge = None;
    if let Some(gateway) = gateway {
        let upload = open_upload(&config, &domain)?;
        let backends = EdgeBackends { accounts, fast_tokens, failure_counts, upload };
        edge = Some(serve_clients(&config, &hosts, gateway, backends, metrics.clone()).await?);
    }
    let served: Vec<&str> = hosts.iter().map(Jid::as_str).collect();
    tracing::info!(domain = %domain, hosts = ?served, data_dir = %config.server.data_dir.display(), registration = config.registration.enabled, "Starling is serving");
    let mut becoming_ready = None;
    if role == Role::Session {
        becoming_ready = Some(tokio::spawn(ready_once_owning(ready.clone(), metrics.clone(), Duration::from_millis(2 * config.cluster.session_timeout_ms.unwrap_or(LONGEST_CHOSEN_SESSION_TIMEOUT_MS)))));
    } else {
        ready.store(true, Ordering::Release);
    }

    // A session node whose owner loop fails cannot serve its partitions, nor an edge whose inbox
    // fails its clients: the process ends with an error (a non-zero status: the orchestrator
    // restarts it) instead of looking healthy.
    let failed = tokio::select! {
        () = shutdown_signal() => None,
        error = fatal_failure(&mut owner_partitions, edge_inbox.as_deref()) => Some(error),
    };
    if let Some(error) = failed {
        ready.store(false, Ordering::Release);
        tracing::error!(error = format!("{error:#}"), "stopping");
        actix::System::current().stop();
        return Err(error);
    }
    if let Some(task) = becoming_ready {
        task.abort();
        let _ = task.await; // finished or cancelled: it cannot mark a draining node ready
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.server.shutdown_grace_seconds);
    drain(Drain { ready, edge, sessions, owner_partitions, role, metrics }, deadline).await;
    if let Some(traces) = traces {
        // The batch exporter's thread blocks on its last export.
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    actix::System::current().stop();
    Ok(())
}

/// Starts exporting traces when `[telemetry] otlp_endpoint` is set.
fn export_traces(config: &Config, node: &str, role: Role) -> anyhow::Result<Option<TraceExport>> {
    let telemetry = &config.telemetry;
    if telemetry.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let role = format!("{role:?}").to_lowercase();
    let settings = TraceSettings { endpoint: &telemetry.otlp_endpoint, sample_ratio: telemetry.sample_ratio, node, role: &role };
    let export = starling_telemetry::traces::start_export(&settings).map_err(anyhow::Error::msg)?;
    tracing::info!(endpoint = %telemetry.otlp_endpoint, sample_ratio = telemetry.sample_ratio, "exporting traces");
    Ok(Some(export))
}

/// A session node is ready once the group gave it partitions — or, should there be more session
/// nodes than partitions, once it has waited `patience` for some (it is a member all the same).
async fn ready_once_owning(ready: Arc<AtomicBool>, metrics: Arc<Metrics>, patience: Duration) {
    poll_until(tokio::time::Instant::now() + patience, Duration::from_millis(100), || metrics.owned_partitions.get() > 0).await;
    tracing::info!(partitions = metrics.owned_partitions.get(), "ready");
    ready.store(true, Ordering::Release);
}

/// Asks `done` every `every` until it holds or `deadline` passes.
async fn poll_until(deadline: tokio::time::Instant, every: Duration, done: impl Fn() -> bool) {
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(every).await;
    }
}

type OwnerLoop = tokio::task::JoinHandle<Result<(), starling_cluster::bus::BusError>>;

/// Completes, with why, if what this process cannot serve without stops on its own: a session
/// node's owner loop, an edge's inbox. Never for one process.
async fn fatal_failure(owner_partitions: &mut Option<OwnerLoop>, edge_inbox: Option<&BusGateway>) -> anyhow::Error {
    let owner_loop = async {
        match owner_partitions.as_mut() {
            Some(task) => match task.await {
                Ok(Ok(())) => anyhow::anyhow!("the owner partitions stopped being served"),
                Ok(Err(error)) => anyhow::Error::new(error).context("serving owner partitions failed"),
                Err(error) => anyhow::Error::new(error).context("the owner partitions' task failed"),
            },
            None => std::future::pending().await,
        }
    };
    let inbox = async {
        match edge_inbox {
            Some(gateway) => anyhow::anyhow!("this edge's inbox failed: {}", gateway.inbox_failure().await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        error = owner_loop => error,
        error = inbox => error,
    }
}

/// What a stopping process lets go of, in order.
struct Drain {
    ready: Arc<AtomicBool>,
    edge: Option<Arc<Edge>>,
    sessions: Option<SessionLayer>,
    owner_partitions: Option<OwnerLoop>,
    role: Role,
    metrics: Arc<Metrics>,
}

/// SIGTERM: not ready any more (a load balancer stops sending clients); the edge stops accepting
/// and ends its streams with `system-shutdown` and waits for them to close; the session layer
/// ends its sessions (one process) or hands its partitions over (a session node) once the
/// archive holds everything it took. Each step is logged with the time it took; whatever is not
/// done by `deadline` is cut short (with a warning).
async fn drain(Drain { ready, edge, sessions, owner_partitions, role, metrics }: Drain, deadline: tokio::time::Instant) {
    let started = tokio::time::Instant::now();
    ready.store(false, Ordering::Release);
    tracing::info!("draining: not ready");
    if let Some(edge) = edge {
        edge.drain();
        poll_until(deadline, Duration::from_millis(50), || metrics.connections_open.get() == 0).await;
        let left = metrics.connections_open.get();
        if left > 0 {
            tracing::warn!(left, "connections still open at the deadline");
        }
        tracing::info!(took_ms = started.elapsed().as_millis() as u64, left, "draining: client connections closed");
    }
    if let Some(sessions) = sessions {
        let step = tokio::time::Instant::now();
        sessions.shut_down(role == Role::All, deadline).await;
        tracing::info!(took_ms = step.elapsed().as_millis() as u64, "draining: sessions ended, archive stored");
    }
    if let Some(owner_partitions) = owner_partitions {
        let step = tokio::time::Instant::now();
        if tokio::time::timeout_at(deadline, owner_partitions).await.is_err() {
            tracing::warn!("the owners' group was not left in time");
        }
        tracing::info!(took_ms = step.elapsed().as_millis() as u64, "draining: left the owners' group");
    }
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "shutting down");
}

/// The c2s listeners (the edge role, alone or with the others).
async fn serve_clients(
    config: &Config,
    hosts: &Hosts,
    gateway: Arc<dyn Gateway>,
    backends: EdgeBackends,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<Edge>> {
    let primary = CertificateSource { domain: &config.server.domain, cert_file: &config.tls.cert_file, key_file: &config.tls.key_file };
    let virtual_hosts = config.hosts.iter().map(|(domain, host)| CertificateSource { domain, cert_file: &host.cert_file, key_file: &host.key_file });
    let sources: Vec<CertificateSource> = std::iter::once(primary).chain(virtual_hosts).collect();
    let (tls, certificates) = starling_edge::tls_server_config(&sources, &config.server.data_dir)?;
    tokio::spawn(reload_certificates(certificates.clone(), Duration::from_secs(config.tls.reload_check_seconds)));
    if config.s2s.enabled {
        serve_federation(config, hosts, certificates, gateway.clone(), metrics.clone()).await?;
    }
    let c2s = &config.c2s;
    let (caps_node, caps_ver) = starling_session::server_caps(hosts, &session_config(config));
    let edge_config = EdgeConfig {
        hosts: hosts.clone(),
        c2s: c2s.clone(),
        registration: config.registration.clone(),
        host_policies: config.edge_host_policies(),
        sm: config.sm.clone(),
        components: config.components.clone(),
        websocket: config.websocket.clone(),
        bytestreams: config.bytestreams.clone(),
        fast: config.fast.clone(),
        fast_key: FastKey::load(&config.fast.key_file, &config.server.data_dir)?,
        caps_ver,
        caps_node,
    };
    let edge = Edge::new(edge_config, tls, gateway, backends, metrics);
    for address in &c2s.starttls_listen {
        let listener = TcpListener::bind(address).await.with_context(|| format!("binding c2s {address}"))?;
        tracing::info!(listen = %address, "c2s (STARTTLS{})", if c2s.require_tls { ", required" } else { "" });
        tokio::spawn(edge.clone().serve_starttls(listener));
    }
    for address in &c2s.direct_tls_listen {
        let listener = TcpListener::bind(address).await.with_context(|| format!("binding c2s direct TLS {address}"))?;
        tracing::info!(listen = %address, "c2s (direct TLS, XEP-0368)");
        tokio::spawn(edge.clone().serve_direct_tls(listener));
    }
    let websocket = &config.websocket;
    for (addresses, tls) in [(&websocket.listen, false), (&websocket.tls_listen, true)] {
        for address in addresses {
            let listener = TcpListener::bind(address).await.with_context(|| format!("binding WebSocket {address}"))?;
            let scheme = if tls { "wss" } else { "ws" };
            tracing::info!(listen = %address, "c2s over WebSocket (RFC 7395): {scheme}://…{} and /.well-known/host-meta", websocket.path);
            tokio::spawn(edge.clone().serve_websocket(listener, tls));
        }
    }
    for address in &config.bytestreams.listen {
        let listener = TcpListener::bind(address).await.with_context(|| format!("binding bytestreams {address}"))?;
        tracing::info!(listen = %address, domain = %config.bytestreams.domain_for(hosts.primary()), "SOCKS5 bytestreams proxy (XEP-0065)");
        tokio::spawn(edge.clone().serve_bytestreams(listener));
    }
    for address in &config.components.listen {
        let listener = TcpListener::bind(address).await.with_context(|| format!("binding components {address}"))?;
        tracing::info!(listen = %address, domains = config.components.secrets.len(), "external components (XEP-0114)");
        tokio::spawn(edge.clone().serve_components(listener));
    }
    Ok(edge)
}

/// Federation (`[s2s]`): the router sends stanzas for other domains through it, and other servers
/// connect to its listeners.
async fn serve_federation(config: &Config, hosts: &Hosts, certificates: Arc<Certificates>, gateway: Arc<dyn Gateway>, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let s2s = &config.s2s;
    let federation = Federation::new(s2s.clone(), hosts.clone(), certificates, gateway.clone(), metrics).context("[s2s] TLS")?;
    gateway.attach_federation(federation.link()).context("attaching federation to the router")?;
    for (addresses, direct_tls) in [(&s2s.listen, false), (&s2s.direct_tls_listen, true)] {
        for address in addresses {
            let listener = TcpListener::bind(address).await.with_context(|| format!("binding s2s {address}"))?;
            tracing::info!(listen = %address, direct_tls, dialback = s2s.dialback, "federation (s2s)");
            tokio::spawn(federation.clone().serve(listener, direct_tls));
        }
    }
    if s2s.dialback_secret.is_empty() {
        tracing::warn!("[s2s] dialback_secret is empty: a random one is used, valid while this process runs");
    }
    Ok(())
}

/// XEP-0363 upload, when `[upload]` is on: its key, its store, and the URL the HTTP listeners
/// are reached at.
fn open_upload(config: &Config, domain: &Jid) -> anyhow::Result<Option<Arc<Upload>>> {
    let upload = &config.upload;
    if !upload.enabled {
        return Ok(None);
    }
    let base_url = config.upload_base_url().context("checked by Config::check")?;
    let key = load_secret_key(&upload.key_file, &config.server.data_dir, "upload.key", "upload key")?;
    let store = FileStore::open(upload, &config.server.data_dir).context("opening the upload store")?;
    let service = Arc::new(Upload::new(upload.clone(), domain, &base_url, key, store).context("[upload] domain")?);
    service.spawn_sweeper();
    tracing::info!(domain = %service.jid(), url = %base_url, store = ?upload.store, "HTTP file upload (XEP-0363)");
    Ok(Some(service))
}

fn session_config(config: &Config) -> SessionConfig {
    let session_config = SessionConfig::new(config.sessions.clone(), config.archive.clone(), config.c2s.client_queue, config.registration.enabled);
    let component_domains = config.components.secrets.keys().cloned().collect();
    let bytestreams = &config.bytestreams;
    let upload = &config.upload;
    let edge_service_domains = Jid::new(&config.server.domain)
        .ok()
        .map(|domain| {
            let proxy = Some(bytestreams.domain_for(&domain)).filter(|_| !bytestreams.listen.is_empty());
            let upload = Some(upload.domain_for(domain.as_str())).filter(|_| upload.enabled);
            proxy.into_iter().chain(upload).filter_map(|service| Jid::new(&service).ok()).collect()
        })
        .unwrap_or_default();
    SessionConfig {
        sm: config.sm.clone(),
        push: config.push.clone(),
        muc: config.muc.clone(),
        pep: config.pep.clone(),
        pubsub: config.pubsub.clone(),
        iot: config.iot.clone(),
        external_services: config.external_services.clone(),
        edge_service_domains,
        component_domains,
        admins: config.admins().filter_map(|jid| Jid::new(jid).ok()).map(|jid| jid.bare()).collect(),
        host_policies: config.session_host_policies(),
        ..session_config
    }
}

/// `[cluster] node_id`, or one made up from the host's pid and a random number.
fn node_id(cluster: &ClusterSection) -> String {
    if cluster.node_id.is_empty() {
        format!("node-{}-{:08x}", std::process::id(), rand::random::<u32>())
    } else {
        cluster.node_id.clone()
    }
}

/// `starling where USER`: prints the user's partition, its owner and its routes.
pub fn locate(config: &Config, user: &Jid) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let registry = connect_registry(&config.cluster).await?;
        let partition = starling_cluster::bus::partition_of(user.as_str(), config.cluster.partitions);
        match registry.partition_owner(partition).await? {
            Some((node, generation)) => println!("{user}: partition {partition}, served by session node {node} (generation {generation})"),
            None => println!("{user}: partition {partition}, not claimed by any session node"),
        }
        let routes = registry.resources(user.as_str()).await?;
        if routes.is_empty() {
            println!("  no bound resource");
        }
        for route in routes {
            let presence = route.presence.as_deref().map_or("unavailable".to_owned(), |stanza| format!("available: {stanza}"));
            println!("  /{} on edge {} connection {} priority {} {presence}", route.resource, route.node, route.connection, route.priority);
        }
        Ok(())
    })
}

/// `check-config --connect`: reaches Kafka (the owners topic made or checked) and Redis as a
/// node of the configured role would.
pub fn check_services(config: &Config) -> anyhow::Result<()> {
    if config.cluster.role == Role::All {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        connect_bus(&config.cluster).await?;
        connect_registry(&config.cluster).await?;
        println!("Kafka and Redis reached; the owners topic has {} partitions", config.cluster.partitions);
        Ok(())
    })
}

async fn connect_registry(cluster: &ClusterSection) -> anyhow::Result<Arc<RedisRegistry>> {
    let url = &cluster.redis_url;
    let password = crate::config::secret(&cluster.redis_password_file)?;
    Ok(Arc::new(RedisRegistry::connect(url, password, &cluster.kafka_prefix).await.with_context(|| format!("connecting to Redis at {url}"))?))
}

fn node_ttl(cluster: &ClusterSection) -> Duration {
    Duration::from_secs(cluster.node_ttl_seconds.max(1))
}

async fn connect_bus(cluster: &ClusterSection) -> anyhow::Result<Arc<dyn Bus>> {
    let kafka = kafka_config(cluster)?;
    let brokers = kafka.brokers.clone();
    Ok(Arc::new(KafkaBus::connect(kafka).await.with_context(|| format!("connecting to Kafka at {brokers}"))?))
}

/// The bus's configuration: `[cluster]`'s Kafka keys, with the SASL password read from its file.
fn kafka_config(cluster: &ClusterSection) -> anyhow::Result<KafkaConfig> {
    let mut settings: Vec<(String, String)> = cluster.kafka_settings.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
    if let Some(password) = crate::config::secret(&cluster.kafka_password_file)? {
        settings.push(("sasl.password".into(), password));
    }
    Ok(KafkaConfig {
        brokers: cluster.kafka_brokers.clone(),
        prefix: cluster.kafka_prefix.clone(),
        partitions: cluster.partitions,
        replication: cluster.replication,
        session_timeout: cluster.session_timeout_ms.map(Duration::from_millis),
        linger: Duration::from_millis(cluster.kafka_linger_ms),
        settings,
    })
}

/// Serves a renewed certificate without a restart: its files are checked every `every` (unless
/// zero) and on SIGHUP.
async fn reload_certificates(certificates: Arc<Certificates>, every: Duration) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    let mut checks = (!every.is_zero()).then(|| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    loop {
        tokio::select! {
            _ = hangup.recv() => {}
            _ = async { checks.as_mut()?.tick().await; Some(()) }, if checks.is_some() => {}
        }
        for reloaded in certificates.reload() {
            match reloaded {
                Ok(path) => tracing::info!(cert = %path.display(), "TLS certificate reloaded"),
                Err((path, error)) => tracing::warn!(cert = %path.display(), %error, "the TLS certificate files changed but do not load; still serving the previous pair"),
            }
        }
    }
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
