//! The edge: client-to-server connections (RFC 6120). It accepts TCP (STARTTLS), direct TLS
//! (XEP-0368) and WebSocket (RFC 7395, with XEP-0156 discovery), frames the stream, negotiates
//! TLS, SASL and resource binding, stamps `from` on everything a client sends, and hands stanzas to the session layer through the
//! [`Gateway`](starling_cluster::gateway::Gateway). It holds sockets and parse state only: it knows
//! no roster, presence or delivery rule, and no concrete session or storage backend.
//!
//! A connection goes through three parts, each unaware of the others' insides: the framing
//! (`framing`) turns bytes into stream events and typed values into bytes; negotiation
//! (`negotiation`) runs its steps — STARTTLS, SASL, registration, binding — up to a bound
//! resource; the bound loop (`bound`) routes stanzas to the session and nonzas to the
//! [`NonzaHandler`]s registered on the [`Edge`].

mod admission;
mod bound;
mod bytestreams;
mod component;
mod config;
mod connection;
mod csi;
mod edge;
mod end;
mod fast;
mod iq;
mod framing;
mod listener;
mod negotiation;
mod nonza;
mod sasl;
mod shaper;
mod tls;
mod web;

#[cfg(test)]
mod test_support;

pub use config::{BytestreamsConfig, C2sConfig, ComponentsConfig, EdgeConfig, HostPolicy, RegistrationConfig, WebSocketConfig};
pub use edge::{Edge, EdgeBackends};
pub use fast::{load_secret_key, write_private, FastConfig, FastKey};
pub use nonza::{BoundStream, NonzaHandler, NonzaHandlers};
pub use shaper::ReadShaper;
pub use tls::{provider as tls_provider, server_config as tls_server_config, CertificateSource, Certificates, TlsSetupError};

/// The SASL exchange as the negotiation drives it, for the fuzz target in `crates/edge/fuzz`.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::sasl::{initial_username, Exchange, Step};
}
