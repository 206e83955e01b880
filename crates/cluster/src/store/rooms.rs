//! Multi-user chat rooms (XEP-0045): persistent rooms always, temporary rooms while they have
//! occupants (so that a room comes back on the node that takes its partition over). Each is one
//! record — its configuration and affiliations, encoded by the MUC module and opaque here — under
//! the room's bare JID, and, for a public room, a listing under its service's domain (what the
//! service's disco#items answers, cluster-wide). A room's actor is its only writer (rooms are
//! partitioned like users).

use async_trait::async_trait;

use super::StoreError;

#[async_trait]
pub trait Rooms: Send + Sync + 'static {
    /// The record of `room`, if it is stored.
    async fn get(&self, room: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the record of `room`, and lists it among its service's public rooms under the
    /// name `listed` (possibly empty), or not at all (`None`).
    async fn set(&self, room: &str, record: Vec<u8>, listed: Option<&str>) -> Result<(), StoreError>;

    /// Forgets `room` and its listing (destroyed, or gone with its last occupant).
    async fn remove(&self, room: &str) -> Result<(), StoreError>;

    /// The rooms listed under `service` (a domain), sorted by JID, with their names.
    async fn listed(&self, service: &str) -> Result<Vec<(String, String)>, StoreError>;
}

/// The service domain of a room's bare JID (`room@service`).
pub fn service_of(room: &str) -> &str {
    room.split_once('@').map_or(room, |(_, service)| service)
}
