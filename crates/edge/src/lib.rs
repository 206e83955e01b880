//! The edge: client-to-server connections (RFC 6120). It accepts TCP (STARTTLS) and direct TLS
//! (XEP-0368), frames the XML stream, negotiates TLS, SASL and resource binding, stamps `from` on
//! everything a client sends, and hands stanzas to the session layer through the
//! [`Gateway`](starling_cluster::gateway::Gateway). It holds sockets and parse state only: it knows
//! no roster, presence or delivery rule, and no concrete session or storage backend.

mod config;
mod connection;
mod listener;
mod register;
mod sasl;
mod tls;

pub use config::EdgeConfig;
pub use listener::Edge;
pub use tls::{server_config as tls_server_config, TlsSetupError};
