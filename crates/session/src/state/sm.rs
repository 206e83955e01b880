//! XEP-0198 stream management, the session's half. The session counts what it sends to a
//! stream-managed resource and keeps it until the client acknowledges it, and counts the client's
//! stanzas it handled; the edge only relays `<enable/>` and `<a/>` and answers `<r/>`. Keeping the
//! unacknowledged stanzas here rather than on the edge is what lets a client resume after its
//! connection (or, in a cluster, its edge) died.
//!
//! A resource whose stream broke stays bound and available, *detached*: what is sent to it is
//! kept, until the client resumes (it gets `<resumed/>` and everything it had not acknowledged)
//! or the resumption timeout ends the session. Whatever is still unacknowledged when a session
//! finally ends is handed back ([`UserState::end_stream_management`]) for offline storage.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use starling_cluster::gateway::{ClientLink, ResumeFailed, StreamCounts, ToClient};
use starling_cluster::registry::ManagedStream;
use starling_protocol::{ns, Jid, StreamError, StreamErrorCondition};
use starling_xml::Element;

use super::UserState;

/// Ended sessions whose counts a user's actor remembers, for `<failed h='…'/>` to a client that
/// tries to resume one (XEP-0198 §5).
const REMEMBERED_ENDED: usize = 4;

/// What a stream-managed resource keeps.
pub(crate) struct StreamManagement {
    /// The id a client resumes with; `None` when it did not ask for resumption.
    id: Option<String>,
    resume_timeout: Duration,
    /// Stanzas queued to the client since enabling, wrapping at 2^32 as `h` does.
    sent: u32,
    /// What was sent and not yet acknowledged, oldest first.
    unacked: VecDeque<Unacked>,
    /// The client's stanzas handled, wrapping.
    handled: u32,
    /// While detached: which wait this is, so that the timer of an earlier one does nothing.
    detached: Option<u64>,
    /// More than `max_unacked` were kept: the session is ending.
    overflowed: bool,
    /// Taken over from an owner that died: the counts so far are the edge's, asked for with
    /// [`ToClient::Sync`]; until they come, deliveries wait (see [`replays`](super::replays)),
    /// acks cannot be placed (and are ignored) and the session cannot be resumed.
    syncing: bool,
}

/// A stanza sent and not yet acknowledged.
pub(crate) struct Unacked {
    pub bytes: Bytes,
    /// When it was sent: the stamp it gets if it ends in offline storage.
    pub sent_at: SystemTime,
}

/// `h` acknowledges more than was sent.
pub(crate) struct TooManyAcknowledged {
    pub h: u32,
    pub sent: u32,
}

impl StreamManagement {
    fn acknowledged(&self) -> u32 {
        self.sent.wrapping_sub(self.unacked.len() as u32)
    }

    /// Forgets what `h` acknowledges.
    fn acknowledge(&mut self, h: u32) -> Result<(), TooManyAcknowledged> {
        let newly = h.wrapping_sub(self.acknowledged()) as usize;
        if newly > self.unacked.len() {
            return Err(TooManyAcknowledged { h, sent: self.sent });
        }
        self.unacked.drain(..newly);
        Ok(())
    }

    /// Takes the edge's counts (see [`UserState::synchronize`]); `now` stamps the stanzas that
    /// came from the edge, should they end in offline storage.
    fn go_on_from(&mut self, counts: StreamCounts, now: SystemTime) {
        let mut unacked: VecDeque<Unacked> = counts.unacknowledged.into_iter().map(|bytes| Unacked { bytes, sent_at: now }).collect();
        unacked.append(&mut self.unacked);
        self.unacked = unacked;
        self.sent = counts.sent.wrapping_add(self.sent);
        self.handled = counts.handled;
        self.syncing = false;
    }

    fn is_resumable(&self) -> bool {
        self.id.is_some() && !self.syncing
    }

    fn new(id: Option<String>, resume_timeout: Duration, syncing: bool) -> Box<StreamManagement> {
        Box::new(StreamManagement { id, resume_timeout, sent: 0, unacked: VecDeque::new(), handled: 0, detached: None, overflowed: false, syncing })
    }
}

/// When a resource's wait ends, for the actor to set a timer for: a detached session's wait to
/// be resumed, or a restored resource's wait for its edge (see [`replays`](super::replays)).
pub(crate) struct Deadline {
    pub jid: Jid,
    pub wait: u64,
    pub after: Duration,
}

impl UserState {
    /// The client of the resource bound on `connection_id` enabled stream management on its
    /// stream: queues `<enabled/>`, so that it is written before the first stanza counted.
    /// Returns the resource's index (its route now says it is stream-managed).
    pub fn enable_stream_management(&mut self, jid: &Jid, connection_id: u64, resume: bool, max: Option<u32>) -> Option<usize> {
        let index = self.bound_index(jid, connection_id)?;
        if self.resources[index].sm.is_some() {
            // The edge refuses a second `<enable/>` itself: this one is a record replayed after
            // an owner's death, already applied.
            return None;
        }
        let enabled = self.start_stream_management(index, resume, max);
        if let Some(link) = &self.resources[index].link {
            let _ = link.try_send(ToClient::Enabled(Bytes::from(enabled.to_bytes())), None);
        }
        Some(index)
    }

    /// What the route of the resource at `index` says about its stream management.
    pub(crate) fn managed_stream(&self, index: usize) -> Option<ManagedStream> {
        self.resources[index].sm.as_ref().map(|sm| ManagedStream { resumption_id: sm.id.clone() })
    }

    /// In a cluster, taking a stream-managed resource over from an owner that died: until the
    /// edge's counts come (the restored link asks first), see [`StreamManagement::syncing`].
    /// The client's `max` is not in the route: the configured timeout applies.
    pub(crate) fn take_over_stream_management(&mut self, index: usize, managed: ManagedStream) {
        let resume_timeout = self.services.config.sm.resume_timeout(None);
        self.resources[index].sm = Some(StreamManagement::new(managed.resumption_id, resume_timeout, true));
    }

    /// The edge's counts for the stream of the resource at `index`, taken over (see
    /// [`replays`](super::replays)): what this owner sends from now on comes after what the edge
    /// had queued.
    pub(super) fn go_on_from_edge(&mut self, index: usize, counts: StreamCounts) {
        if let Some(sm) = self.resources[index].sm.as_mut().filter(|sm| sm.syncing) {
            sm.go_on_from(counts, SystemTime::now());
        }
    }

    /// Turns stream management on for the resource at `index` (with an id when the client asked
    /// to be able to resume) and returns the `<enabled/>` that tells the client so.
    pub fn start_stream_management(&mut self, index: usize, resume: bool, max: Option<u32>) -> Element {
        let config = &self.services.config.sm;
        let resume_timeout = config.resume_timeout(max);
        let id = resume.then(|| format!("{:032x}", rand::random::<u128>()));
        let mut enabled = Element::new("enabled", ns::SM);
        if let Some(id) = &id {
            enabled.set_attr("id", id.as_str());
            enabled.set_attr("resume", "true");
            enabled.set_attr("max", resume_timeout.as_secs().to_string());
        }
        self.resources[index].sm = Some(StreamManagement::new(id, resume_timeout, false));
        enabled
    }

    /// One of the client's stanzas was handled (the edge counts the same).
    pub fn count_handled(&mut self, jid: &Jid) {
        if let Some(index) = self.resource_index(jid)
            && let Some(sm) = self.resources[index].sm.as_mut()
        {
            sm.handled = sm.handled.wrapping_add(1);
        }
    }

    /// The client acknowledged `h` stanzas; acknowledging more than were sent closes the stream
    /// with the error XEP-0198 §4 gives.
    pub fn acknowledge(&mut self, jid: &Jid, connection_id: u64, h: u32) {
        let Some(index) = self.bound_index(jid, connection_id) else { return };
        let resource = &mut self.resources[index];
        let Some(sm) = resource.sm.as_mut().filter(|sm| !sm.syncing) else { return };
        if let Err(TooManyAcknowledged { h, sent }) = sm.acknowledge(h) {
            let text = format!("You acknowledged {h} stanzas, but I only sent you {sent} so far.");
            // Not resumable: the client's count cannot be trusted.
            sm.id = None;
            if let Some(link) = &resource.link {
                let _ = link.try_send(ToClient::Close(StreamError::new(StreamErrorCondition::UndefinedCondition).with_text(text)), None);
            }
        }
    }

    /// Keeps `bytes`, being sent to the resource at `index`, until the client acknowledges it.
    /// True when the resource is stream-managed (the bytes are kept).
    pub(super) fn keep_unacknowledged(&mut self, index: usize, bytes: &Bytes) -> bool {
        let max_unacked = self.services.config.sm.max_unacked;
        let resource = &mut self.resources[index];
        let Some(sm) = resource.sm.as_mut() else { return false };
        sm.sent = sm.sent.wrapping_add(1);
        sm.unacked.push_back(Unacked { bytes: bytes.clone(), sent_at: SystemTime::now() });
        if sm.unacked.len() > max_unacked && !sm.overflowed {
            tracing::info!(jid = %resource.jid, "too many unacknowledged stanzas, ending the session");
            sm.overflowed = true;
            sm.id = None;
            match &resource.link {
                Some(link) => {
                    let error = StreamError::new(StreamErrorCondition::PolicyViolation).with_text("too many unacknowledged stanzas");
                    let _ = link.try_send(ToClient::Close(error), None);
                }
                // Detached: the wait ends now.
                None => {
                    if let Some(wait) = sm.detached {
                        self.deadlines.push(Deadline { jid: resource.jid.clone(), wait, after: Duration::ZERO });
                    }
                }
            }
        }
        true
    }

    /// The stream of the resource at `index` broke. A resumable session stays bound, detached,
    /// and true is returned; otherwise the resource is to be removed.
    pub fn detach(&mut self, index: usize) -> bool {
        let resource = &mut self.resources[index];
        let Some(sm) = resource.sm.as_mut().filter(|sm| sm.is_resumable()) else { return false };
        let wait = rand::random::<u64>();
        sm.detached = Some(wait);
        resource.link = None;
        self.deadlines.push(Deadline { jid: resource.jid.clone(), wait, after: sm.resume_timeout });
        self.services.metrics.sessions_detached.inc();
        true
    }

    /// The deadlines set since the last call, for the actor to set timers for.
    pub fn take_deadlines(&mut self) -> Vec<Deadline> {
        std::mem::take(&mut self.deadlines)
    }

    /// The connection id of the resource `jid` if it is still detached in the wait `wait`.
    pub fn still_waiting(&self, jid: &Jid, wait: u64) -> Option<u64> {
        let resource = &self.resources[self.resource_index(jid)?];
        (resource.sm.as_ref()?.detached == Some(wait)).then_some(resource.connection_id)
    }

    /// The session at `index` ends for good: what the client never acknowledged is handed back
    /// (to be stored offline), and its count is remembered for a late resumption attempt.
    pub fn end_stream_management(&mut self, index: usize) -> Vec<Unacked> {
        let waiting = self.take_waiting(index);
        let Some(sm) = self.resources[index].sm.take() else { return waiting };
        if sm.detached.is_some() {
            self.services.metrics.sessions_detached.dec();
        }
        // A session still syncing does not know its count: a late resumption gets no `h`.
        if let Some(id) = sm.id.filter(|_| !sm.syncing) {
            if self.ended_sessions.len() == REMEMBERED_ENDED {
                self.ended_sessions.pop_front();
            }
            self.ended_sessions.push_back((id, sm.handled));
        }
        let mut unacked: Vec<Unacked> = sm.unacked.into();
        unacked.extend(waiting);
        unacked
    }

    /// Resumes the session `previd` on `link` (XEP-0198 §5): acknowledges up to `h` and closes
    /// the old stream if the server had not noticed it broke. Returns the resource's index and the
    /// count of the client's stanzas handled; the unacknowledged stanzas are sent again by
    /// [`retransmit_unacknowledged`](Self::retransmit_unacknowledged), after the answer.
    /// `edge` names the edge holding the new stream (in a cluster): the route published after
    /// this names it, so a later reaping of the old edge's routes leaves this one alone.
    pub fn resume(&mut self, previd: &str, h: u32, link: ClientLink, edge: Option<String>) -> Result<(usize, u32), ResumeFailed> {
        let found = self.resources.iter().position(|r| r.sm.as_ref().is_some_and(|sm| sm.is_resumable() && sm.id.as_deref() == Some(previd)));
        let Some(index) = found else {
            let handled = self.ended_sessions.iter().find(|(id, _)| id == previd).map(|(_, handled)| *handled);
            return Err(ResumeFailed { handled });
        };
        let resource = &mut self.resources[index];
        let Some(sm) = resource.sm.as_mut() else { return Err(ResumeFailed { handled: None }) };
        if sm.acknowledge(h).is_err() {
            // The client claims more than was sent: resuming would lose or repeat stanzas. It
            // binds afresh; the session's stanzas go to offline storage when its stream ends.
            sm.id = None;
            return Err(ResumeFailed { handled: Some(sm.handled) });
        }
        if sm.detached.take().is_some() {
            self.services.metrics.sessions_detached.dec();
        }
        resource.connection_id = link.connection_id;
        resource.edge = edge;
        if let Some(old) = resource.link.replace(link) {
            let _ = old.try_send(ToClient::Close(StreamError::new(StreamErrorCondition::Conflict).with_text("resumed on another stream")), None);
        }
        Ok((index, sm.handled))
    }

    /// Queues everything the client of the resumed resource at `index` had not acknowledged.
    pub fn retransmit_unacknowledged(&mut self, index: usize) {
        let resource = &self.resources[index];
        let (Some(sm), Some(link)) = (resource.sm.as_ref(), resource.link.as_ref()) else { return };
        for unacked in &sm.unacked {
            if link.try_send(ToClient::Stanza(unacked.bytes.clone(), None), None).is_err() {
                // The new stream's queue is sized for this; a client gone already breaks it again.
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed(sent: u32, unacked: usize) -> StreamManagement {
        let unacked = (0..unacked).map(|_| Unacked { bytes: Bytes::new(), sent_at: SystemTime::now() }).collect();
        StreamManagement { id: None, resume_timeout: Duration::ZERO, sent, unacked, handled: 0, detached: None, overflowed: false, syncing: false }
    }

    #[test]
    fn an_ack_forgets_what_it_counts_and_no_more() {
        let mut sm = managed(5, 5);
        assert!(sm.acknowledge(3).is_ok());
        assert_eq!(sm.unacked.len(), 2);
        assert!(sm.acknowledge(3).is_ok(), "the same h again acknowledges nothing new");
        assert_eq!(sm.unacked.len(), 2);
        let Err(TooManyAcknowledged { h, sent }) = sm.acknowledge(6) else { panic!("h beyond what was sent") };
        assert_eq!((h, sent), (6, 5));
        assert!(sm.acknowledge(5).is_ok());
        assert!(sm.unacked.is_empty());
    }

    #[test]
    fn a_taken_over_stream_goes_on_from_the_edges_counts() {
        // The new owner sent 2 stanzas while it waited; the edge had queued 10, 3 unacknowledged.
        let mut sm = managed(2, 2);
        sm.syncing = true;
        sm.id = Some("resume-me".into());
        assert!(!sm.is_resumable(), "not resumable before the counts come");
        let stanza = |n: u8| Bytes::from(format!("<message xmlns='jabber:client' id='{n}'/>"));
        let counts = StreamCounts { sent: 10, unacknowledged: vec![stanza(7), stanza(8), stanza(9)], handled: 7 };
        sm.go_on_from(counts, SystemTime::now());
        assert!(sm.is_resumable());
        assert_eq!((sm.sent, sm.handled, sm.unacked.len()), (12, 7, 5));
        assert_eq!(sm.unacked[0].bytes, stanza(7), "the edge's first, then this owner's");
        // The client read 9 of them: what the edge had sent up to its ninth goes.
        assert!(sm.acknowledge(9).is_ok());
        assert_eq!(sm.unacked.len(), 3);
        assert_eq!(sm.unacked[0].bytes, stanza(9));
        assert!(sm.acknowledge(12).is_ok());
        assert!(sm.unacked.is_empty());
    }

    #[test]
    fn counts_wrap_at_two_to_the_32() {
        // 3 stanzas sent around the wrap: counts u32::MAX - 1, u32::MAX, 0.
        let mut sm = managed(1, 3);
        assert_eq!(sm.acknowledged(), u32::MAX - 1);
        assert!(sm.acknowledge(u32::MAX).is_ok());
        assert_eq!(sm.unacked.len(), 2);
        assert!(sm.acknowledge(1).is_ok());
        assert!(sm.unacked.is_empty());
        assert!(sm.acknowledge(2).is_err());
    }
}
