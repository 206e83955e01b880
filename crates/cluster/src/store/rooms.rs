//! Multi-user chat rooms that outlive their occupants (XEP-0045 persistent rooms): each is one
//! record — its configuration and affiliations, encoded by the MUC module and opaque here — under
//! the room's bare JID. A room's actor is its only writer (rooms are partitioned like users).

use async_trait::async_trait;

use super::StoreError;

#[async_trait]
pub trait Rooms: Send + Sync + 'static {
    /// The record of `room`, if it is stored.
    async fn get(&self, room: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the record of `room`.
    async fn set(&self, room: &str, record: Vec<u8>) -> Result<(), StoreError>;

    /// Forgets `room` (destroyed, or no longer persistent).
    async fn remove(&self, room: &str) -> Result<(), StoreError>;
}
