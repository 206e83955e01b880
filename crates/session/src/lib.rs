//! The session layer: one `actix` actor per user (bare JID) owning that user's resources, roster,
//! presence, carbons and blocking state, and applying RFC 6121's delivery rules.
//!
//! Actors are spread over a fixed set of arbiters by a hash of the bare JID, so a user's stanzas
//! are always handled on one thread and in order. The layer reaches storage only through the
//! `starling-cluster` traits and clients only through [`ClientLink`](starling_cluster::gateway::ClientLink)
//! queues: it knows no socket, no concrete backend and no wire framing.

mod actor;
mod archive_writer;
mod blocking;
mod carbons;
mod config;
mod datetime;
mod directory;
mod features;
mod iq;
mod mam;
mod offline;
mod owner;
mod presence;
mod roster;
mod routing;
mod state;

pub use archive_writer::{ArchiveBusy, ArchiveWriter};
pub use config::{ArchiveConfig, ArchiveWriterConfig, SessionConfig};
pub use directory::SessionLayer;
pub use features::{caps_ver, server_features, CAPS_NODE};
