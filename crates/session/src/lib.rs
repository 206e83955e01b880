//! The session layer: one `actix` actor per user (bare JID) owning that user's resources and the
//! state its features keep, one actor per entity of a local service, and the host router between
//! them, the edge, external components and remote domains.
//!
//! The path of a stanza through a user's actor (`pipeline`) runs the handlers and hooks that the
//! feature modules (`modules/`, one per RFC area or XEP) register in the module registry
//! (`registry`). Actors are spread over a fixed set of arbiters by a hash of the JID, so an
//! entity's stanzas are always handled on one thread and in order.
//!
//! The layer reaches storage only through the `starling-cluster` traits and clients only through
//! [`ClientLink`](starling_cluster::gateway::ClientLink) queues: it knows no socket, no concrete
//! backend and no wire framing.

mod actor;
mod allowance;
mod archive_writer;
mod carrier;
mod cluster_side;
mod config;
mod context;
mod datetime;
mod directory;
mod extensions;
mod fan_out;
mod hold;
mod iq;
mod layer;
mod messages;
mod modules;
mod owner;
mod pipeline;
mod recent;
mod registry;
mod remote_components;
mod router;
mod service;
mod state;

pub use archive_writer::{ArchiveBusy, ArchiveWriter, ArchiveWriterConfig};
pub use config::{ArchiveConfig, ArchiveMode, ExternalServiceConfig, ExternalServicesConfig, IotConfig, MucConfig, PepConfig, PubSubConfig, PushConfig, SessionConfig, SessionHostPolicy, SessionsConfig};
pub use layer::{inline_features, server_caps, ResourceSummary, SessionLayer};
pub use modules::{end_sessions_order, EndReason};
pub use starling_cluster::gateway::ComponentLink;

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod muc_tests;
#[cfg(test)]
mod sm_tests;
