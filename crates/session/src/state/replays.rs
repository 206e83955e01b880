//! In a cluster: a resource's deliveries when owners change. An owner that dies has handled some
//! records it had not committed yet; the next owner handles them again. Every message delivered
//! carries a key — its cause (the edge record that started it, the same in the replay) and its
//! bytes — and a resource remembers the latest keys, so the same message is written once
//! (presence and IQs, state rather than conversation, are not keyed):
//!
//! - when the sender's owner died, the recipient's owner (alive) has the keys itself, for a while
//!   ([`Recent`]);
//! - when the recipient's owner died, the new owner restores the resource from its route, asks
//!   the edge where the connection stands ([`ToClient::Sync`], first on the link) and holds every
//!   delivery until the edge answers with the keys it wrote last ([`Synced`]); then it goes on
//!   from there, writing only what the edge has not had. The answer also carries a
//!   stream-managed stream's counts, so `h` goes on unbroken.
//!
//! Archive entries are kept from repeating by the archive module, the same way.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use starling_cluster::gateway::{DeliveryKey, Synced, ToClient};
use starling_cluster::hold::Hold;
use starling_protocol::{ns, Jid, Stanza, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::Element;

use super::{Resource, UserState};
use crate::hold::{current_cause, current_hold};
use crate::recent::Recent;
use crate::state::{Deadline, Unacked};

/// How long a restored resource waits for its edge's answer before its connection is given up
/// (closed, and what waited stored offline): an edge alive answers within a round trip.
const EDGE_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What a resource knows of its latest deliveries (allocated at its first keyed delivery, so
/// in one process it costs nothing).
#[derive(Default)]
pub(crate) struct Replays {
    /// Keys of the latest deliveries to the connection.
    recent: Recent<DeliveryKey>,
    /// Taken over from an owner that died, until the edge answers: what is to be written.
    waiting: Option<Vec<Waiting>>,
    /// Which wait for the edge this is, so that the timer of an earlier one does nothing.
    wait: u64,
}

/// A delivery held until the edge's answer, with the hold of the record that caused it.
struct Waiting {
    kind: StanzaKind,
    bytes: Bytes,
    key: Option<DeliveryKey>,
    hold: Option<Hold>,
}

/// The key of a message's delivery of `bytes` caused by the record being handled, if it is from
/// the bus.
pub(super) fn delivery_key(kind: StanzaKind, bytes: &[u8]) -> Option<DeliveryKey> {
    if kind != StanzaKind::Message {
        return None;
    }
    current_cause().map(|cause| key_of(cause, bytes))
}

/// The key of `bytes` delivered because of `cause`, leaving out the last XEP-0359 `<stanza-id/>`
/// (the one the recipient's archive appended): an owner that died may have delivered a message
/// before its archive write was durable, and its successor then archives the replay under a new
/// id — the same message, which must still reach the client once.
fn key_of(cause: u64, bytes: &[u8]) -> DeliveryKey {
    const STANZA_ID: &[u8] = b"<stanza-id ";
    let stanza_id = bytes.windows(STANZA_ID.len()).rposition(|window| window == STANZA_ID).and_then(|start| {
        let length = bytes[start..].windows(2).position(|window| window == b"/>")? + 2;
        Some((start, start + length))
    });
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(cause);
    match stanza_id {
        Some((start, end)) => {
            hasher.update(&bytes[..start]);
            hasher.update(&bytes[end..]);
        }
        None => hasher.update(bytes),
    }
    hasher.digest()
}

impl UserState {
    /// Whether a delivery to the resource at `index` is to be written now. Not when a previous
    /// owner (or this one, for a replayed sender's record) wrote the same delivery, nor while the
    /// resource waits for its edge's answer: then it is kept until the answer comes.
    pub(super) fn screen_delivery(&mut self, index: usize, kind: StanzaKind, bytes: &Bytes, key: Option<DeliveryKey>) -> bool {
        let resource = &mut self.resources[index];
        let replays = match (resource.replays.as_deref_mut(), key) {
            (Some(replays), _) => replays,
            (None, Some(_)) => resource.replays.insert(Box::default()),
            (None, None) => return true,
        };
        if let Some(key) = key
            && replays.recent.iter().any(|recent| *recent == key)
        {
            self.services.metrics.replayed_deliveries_dropped.inc();
            return false;
        }
        if let Some(waiting) = replays.waiting.as_mut() {
            waiting.push(Waiting { kind, bytes: bytes.clone(), key, hold: current_hold() });
            return false;
        }
        if let Some(key) = key {
            replays.recent.push(key);
        }
        true
    }

    /// A resource restored from its route: the restored link first asks the edge where the
    /// connection stands, and deliveries wait for the answer (for at most [`EDGE_ANSWER_WAIT`]).
    fn await_edge(&mut self, mut resource: Resource) {
        let link = resource.link.as_ref().expect("a restored resource has a link");
        let _ = link.try_send(ToClient::Sync(resource.jid.clone()), None);
        let wait = rand::random::<u64>();
        self.deadlines.push(Deadline { jid: resource.jid.clone(), wait, after: EDGE_ANSWER_WAIT });
        resource.replays = Some(Box::new(Replays { recent: Recent::default(), waiting: Some(Vec::new()), wait }));
        self.resources.push(resource);
    }

    /// The connection id of the resource `jid` if it still waits for its edge's answer in the
    /// wait `wait`: then its connection is closed, to be unbound by the caller.
    pub fn edge_did_not_answer(&mut self, jid: &Jid, wait: u64) -> Option<u64> {
        let index = self.resource_index(jid)?;
        let resource = &mut self.resources[index];
        let replays = resource.replays.as_ref().filter(|replays| replays.waiting.is_some() && replays.wait == wait)?;
        tracing::warn!(%jid, waiting = replays.waiting.as_ref().map_or(0, Vec::len), "the edge did not say where a connection taken over stands; closing it");
        if let Some(link) = resource.link.take() {
            let error = StreamError::new(StreamErrorCondition::InternalServerError).with_text("the session moved and its connection could not be taken over");
            let _ = link.try_send(ToClient::Close(error), None);
        }
        Some(resource.connection_id)
    }

    /// The edge's answer for a resource taken over: the stream goes on from its counts, and
    /// what waited is written unless the edge had it already. Returns what could not be written
    /// (the client reads too slowly for the backlog: its link is given up), for the caller to
    /// keep as a session's unacknowledged stanzas are kept (offline).
    pub fn synchronize(&mut self, jid: &Jid, connection_id: u64, synced: Synced) -> Vec<Unacked> {
        let Some(index) = self.bound_index(jid, connection_id) else { return Vec::new() };
        let resource = &mut self.resources[index];
        let Some(replays) = resource.replays.as_deref_mut() else { return Vec::new() };
        let Some(waiting) = replays.waiting.take() else { return Vec::new() };
        for key in synced.delivered {
            replays.recent.push(key);
        }
        if let Some(counts) = synced.counts {
            self.go_on_from_edge(index, counts);
        }
        let mut left = Vec::new();
        for Waiting { kind, bytes, key, hold } in waiting {
            if self.screen_delivery(index, kind, &bytes, key)
                && let Err(bytes) = self.write_now(index, kind, bytes, key, hold.as_ref())
            {
                left.push(Unacked { bytes, sent_at: SystemTime::now() });
            }
        }
        left
    }

    /// What still waited for the edge's answer when the resource goes, as unacknowledged
    /// stanzas (its messages are stored offline).
    pub(super) fn take_waiting(&mut self, index: usize) -> Vec<Unacked> {
        let Some(waiting) = self.resources[index].replays.as_mut().and_then(|replays| replays.waiting.take()) else { return Vec::new() };
        let now = SystemTime::now();
        waiting.into_iter().map(|waiting| Unacked { bytes: waiting.bytes, sent_at: now }).collect()
    }

    /// Once per actor, in a cluster: takes over the resources a previous owner recorded, an
    /// available one with the presence stanza it last broadcast. Whether it restored any.
    pub async fn restore_routes(&mut self) -> bool {
        if self.routes_restored {
            return false;
        }
        self.routes_restored = true;
        let Some(cluster) = self.services.cluster.get().cloned() else { return false };
        let before = self.resources.len();
        for (route, link) in cluster.restore(&self.user, self.services.config.client_queue).await {
            let Ok(jid) = self.user.with_resource(&route.resource) else { continue };
            if self.resource_index(&jid).is_some() {
                continue;
            }
            let presence = route.presence.as_deref().map(|text| {
                // The stanza the resource broadcast; one that does not parse still means available.
                let element = Element::parse(text.as_bytes()).unwrap_or_else(|_| Element::new("presence", ns::CLIENT));
                Stanza::build(element, &jid, None)
            });
            self.services.metrics.sessions_bound.inc();
            let mut resource = Resource::new(jid, link, Some(route.node));
            resource.presence = presence;
            resource.priority = route.priority;
            self.await_edge(resource);
            if let Some(managed) = route.stream_management {
                self.take_over_stream_management(self.resources.len() - 1, managed);
            }
        }
        self.resources.len() > before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_archived_under_a_new_id_has_the_same_delivery_key() {
        let delivered = |id: &str| format!("<message xmlns='jabber:client' from='b@x/r' to='a@x/r' type='chat'><body>77</body><stanza-id xmlns='urn:xmpp:sid:0' by='a@x' id='{id}'/></message>");
        assert_eq!(key_of(7, delivered("1796580975317168").as_bytes()), key_of(7, delivered("1796580975317999").as_bytes()));
        assert_ne!(key_of(7, delivered("1").as_bytes()), key_of(8, delivered("1").as_bytes()), "another cause, another delivery");
        let other = delivered("1").replace("<body>77</body>", "<body>78</body>");
        assert_ne!(key_of(7, delivered("1").as_bytes()), key_of(7, other.as_bytes()), "other bytes, another delivery");
        assert_eq!(key_of(7, b"<message/>"), xxhash_rust::xxh3::xxh3_64_with_seed(b"<message/>", 7), "without a stanza-id: the bytes");
    }

    /// What de-duplication costs a delivered message in a cluster: its key, and the scan of the
    /// keys a resource remembers (at most `recent::CAPACITY`). A measurement, not a check:
    /// `cargo test --release -p starling-session cost_of_a_delivery_key -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it in release"]
    fn cost_of_a_delivery_key() {
        let body = "x".repeat(64);
        let delivered = format!("<message xmlns='jabber:client' from='user123@localhost/harness' to='user456@localhost/harness' type='chat' id='a1b2c3d4'><body>{body}</body><stanza-id xmlns='urn:xmpp:sid:0' by='user456@localhost' id='1796580975317168'/></message>");
        let rounds = 1_000_000u64;
        let started = std::time::Instant::now();
        let mut keys = 0u64;
        for cause in 0..rounds {
            keys ^= key_of(cause, std::hint::black_box(delivered.as_bytes()));
        }
        let key_ns = started.elapsed().as_nanos() as f64 / rounds as f64;
        let mut recent = Recent::default();
        for key in 0..crate::recent::CAPACITY as u64 {
            recent.push(key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        let started = std::time::Instant::now();
        let mut found = 0u64;
        for key in 0..rounds {
            found += u64::from(recent.iter().any(|recent| *recent == std::hint::black_box(key | 1 << 63)));
        }
        let scan_ns = started.elapsed().as_nanos() as f64 / rounds as f64;
        println!("{} bytes: key {key_ns:.0} ns, scan of {} remembered keys {scan_ns:.0} ns ({keys:x} {found})", delivered.len(), crate::recent::CAPACITY);
    }
}
