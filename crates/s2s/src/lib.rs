//! Federation (RFC 6120 server-to-server): streams to and from other servers' domains, over TLS
//! (STARTTLS or XEP-0368 direct TLS), authenticated with SASL EXTERNAL on certificates (XEP-0178)
//! or Server Dialback (XEP-0220) where certificates do not verify, by policy; remote servers found
//! through DNS SRV (or static routes); one stream out per pair of domains with a bounded queue;
//! allow and deny lists of domains.
//!
//! It sits beside the edge: the host router hands it every stanza for a domain that is not ours
//! ([`Federation::link`], attached through the [`Gateway`](starling_cluster::gateway::Gateway)),
//! and what other servers send goes into the router as vouched-for stanzas, their `from`
//! checked against the domains each stream authenticated.

mod config;
mod dialback;
mod federation;
mod inbound;
mod outbound;
mod resolve;
mod stream;
mod tls;

pub use config::S2sConfig;
pub use federation::Federation;
pub use tls::S2sTlsError;
