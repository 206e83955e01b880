//! What every connection shares: the configuration, TLS, the way into the session layer, account
//! keys and FAST tokens, the authentication throttle (whose counts also limit registrations per
//! address), the handlers of nonzas on bound streams, and the drain signal: once it is given
//! the listeners stop accepting and every bound stream ends with `system-shutdown`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use starling_cluster::failure_counts::FailureCounts;
use starling_cluster::gateway::Gateway;
use starling_cluster::store::{Accounts, FastTokens};
use starling_telemetry::Metrics;
use starling_upload::Upload;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admission::Admission;
use crate::config::EdgeConfig;
use crate::nonza::NonzaHandlers;
use crate::sasl::Throttle;

/// The client edge: built once at start, shared by every connection.
pub struct Edge {
    pub(crate) config: EdgeConfig,
    pub(crate) tls: TlsAcceptor,
    /// The same certificate for the WebSocket listeners, negotiating `http/1.1` by ALPN where c2s
    /// negotiates `xmpp-client` (a browser offering only HTTP protocols gets a fatal alert from
    /// the latter).
    pub(crate) web_tls: TlsAcceptor,
    pub(crate) gateway: Arc<dyn Gateway>,
    pub(crate) accounts: Arc<dyn Accounts>,
    pub(crate) fast_tokens: Arc<dyn FastTokens>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) throttle: Throttle,
    pub(crate) admission: Admission,
    /// The XEP-0065 proxy, when `[bytestreams]` has a listener: IQs to its domain are answered here.
    pub(crate) proxy: Option<Arc<crate::bytestreams::Proxy>>,
    /// XEP-0363 upload, when `[upload]` is on: slot requests are answered here, and the HTTP
    /// listeners serve its files.
    pub(crate) upload: Option<Arc<Upload>>,
    /// Where top-level elements of bound streams that are not stanzas go.
    pub(crate) nonzas: NonzaHandlers,
    next_connection: AtomicU64,
    /// True once the edge drains ([`Edge::drain`]).
    drain: watch::Sender<bool>,
}

/// What the edge reads and writes besides the gateway: accounts, FAST tokens, and the
/// authentication failure counts (the cluster's, in a cluster).
pub struct EdgeBackends {
    pub accounts: Arc<dyn Accounts>,
    pub fast_tokens: Arc<dyn FastTokens>,
    pub failure_counts: Arc<dyn FailureCounts>,
    /// The XEP-0363 upload service (its file store), when it is on.
    pub upload: Option<Arc<Upload>>,
}

impl Edge {
    /// An edge with the standard nonza handlers: client state indication (XEP-0352) when the
    /// session layer acts on it.
    pub fn new(config: EdgeConfig, tls: Arc<rustls::ServerConfig>, gateway: Arc<dyn Gateway>, backends: EdgeBackends, metrics: Arc<Metrics>) -> Arc<Edge> {
        let mut nonzas = NonzaHandlers::new();
        if gateway.supports_client_state() {
            crate::csi::register(&mut nonzas);
        }
        Edge::with_nonza_handlers(config, tls, gateway, backends, metrics, nonzas)
    }

    /// An edge that hands the nonzas `nonzas` knows to their handlers (features such as stream
    /// management register theirs at start-up).
    pub fn with_nonza_handlers(
        config: EdgeConfig,
        tls: Arc<rustls::ServerConfig>,
        gateway: Arc<dyn Gateway>,
        EdgeBackends { accounts, fast_tokens, failure_counts, upload }: EdgeBackends,
        metrics: Arc<Metrics>,
        nonzas: NonzaHandlers,
    ) -> Arc<Edge> {
        let throttle = Throttle::new(
            config.c2s.auth_throttle_failures,
            config.c2s.auth_throttle_address_failures,
            config.c2s.auth_throttle_window(),
            Duration::from_millis(config.c2s.auth_failure_delay_ms),
            failure_counts,
        );
        let c2s = &config.c2s;
        let admission = Admission::new(c2s.max_connections_per_address, c2s.connection_rate_per_address, c2s.connection_burst_per_address);
        let proxy = crate::bytestreams::Proxy::new(&config.bytestreams, config.domain()).map(Arc::new);
        let mut web_tls = (*tls).clone();
        web_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(Edge {
            config,
            tls: TlsAcceptor::from(tls),
            web_tls: TlsAcceptor::from(Arc::new(web_tls)),
            gateway,
            accounts,
            fast_tokens,
            metrics,
            throttle,
            admission,
            proxy,
            upload,
            nonzas,
            // From a random point, so that a restarted edge (same node id) never reuses the id of
            // a connection an owner may still have a route to.
            next_connection: AtomicU64::new(rand::random::<u64>() >> 1),
            drain: watch::Sender::new(false),
        })
    }

    /// Stops accepting connections and ends every bound stream with `system-shutdown` (RFC 6120
    /// §4.9.3.20), so that clients reconnect — to another edge, in a cluster, where a
    /// stream-managed session is resumed. Streams still negotiating end with the process.
    pub fn drain(&self) {
        self.drain.send_replace(true);
    }

    /// Completes once the edge drains.
    pub(crate) fn drained(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut signal = self.drain.subscribe();
        async move {
            if signal.wait_for(|draining| *draining).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A connection id unique in this process (see [`ClientLink`](starling_cluster::gateway::ClientLink)).
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// FAST (XEP-0484) on this edge, when enabled.
    pub(crate) fn fast(&self) -> Option<crate::fast::Fast<'_>> {
        let config = &self.config.fast;
        config.enabled.then(|| crate::fast::Fast { config, key: &self.config.fast_key, tokens: self.fast_tokens.as_ref() })
    }
}
