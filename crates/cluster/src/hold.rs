//! Committing an owner record only once what it caused is durable.
//!
//! A session node hands each record it takes from its partitions to an actor together with a
//! [`Hold`]. Whatever the handling produces takes a clone along: a stanza queued towards an edge
//! ([`LinkHolds`]), a stanza published to another owner, a message queued for the archive, a
//! delivery to another local actor. Each clone is dropped once its part is done — the bus
//! acknowledged the publication, the archive stored the batch, the other actor finished — and when
//! the last one goes, the record is released. [`RecordHolds`] turns releases into commit points:
//! per partition, the highest offset below which every record was released. So a crash replays
//! everything whose effects were not yet durable, instead of losing it.
//!
//! A part that could not be made durable (the bus refused a publication for good) [fails](Hold::fail)
//! the hold; the owner then stops, so the group replays the record elsewhere rather than skip it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use starling_telemetry::traces::StanzaSpan;
use tokio::sync::mpsc;

/// Keeps one owner record from being committed while any clone of it lives.
#[derive(Clone)]
pub struct Hold(Arc<HoldInner>);

struct HoldInner {
    release: Release,
    /// What the record's effects are recognised by when it is replayed (`Stamp::cause`).
    cause: u64,
    failed: AtomicBool,
    to: mpsc::UnboundedSender<Release>,
    /// A traced record's span on this node: it ends when the last effect is durable.
    trace: StanzaSpan,
}

/// A record whose holds are all gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub partition: u32,
    /// Which assignment of the partition the record was taken under (a record taken before a
    /// partition moved away and back must not release its replay).
    pub epoch: u64,
    pub offset: u64,
    /// Some part of its handling could not be made durable.
    pub failed: bool,
}

impl Hold {
    /// The cause of the record held ([`OwnerRecord::cause`](crate::envelope::OwnerRecord::cause)):
    /// every effect of its handling carries it.
    pub fn cause(&self) -> u64 {
        self.0.cause
    }

    /// The record's span when it is traced: the records its handling causes continue it.
    pub fn trace(&self) -> &StanzaSpan {
        &self.0.trace
    }

    /// Marks the record as not handled: something it caused was lost.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }
}

/// The trace context records caused by the records of `holds` carry: the first traced one's
/// span (empty when none is traced).
pub fn traceparent(holds: &[Hold]) -> String {
    holds.iter().find(|hold| hold.trace().is_traced()).map(|hold| hold.trace().traceparent()).unwrap_or_default()
}

impl Drop for HoldInner {
    fn drop(&mut self) {
        let release = Release { failed: self.failed.load(Ordering::Acquire), ..self.release };
        // The owner is gone if this fails: nothing is committed any more either way.
        let _ = self.to.send(release);
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hold({}@{})", self.0.release.offset, self.0.release.partition)
    }
}

/// The records an owner took and has not seen released, per partition.
pub struct RecordHolds {
    partitions: HashMap<u32, PartitionHolds>,
    /// Per partition, the offset up to which this node handled every record durably — kept
    /// when the partition goes, so that records it gets again (a commit that failed, the
    /// partition coming back) are not handled twice.
    durable: HashMap<u32, u64>,
    next_epoch: u64,
    to: mpsc::UnboundedSender<Release>,
}

#[derive(Default)]
struct PartitionHolds {
    epoch: u64,
    outstanding: BTreeSet<u64>,
    /// The lowest and the highest offset taken in this assignment.
    taken: Option<(u64, u64)>,
    /// The highest offset committed in this assignment.
    committed: Option<u64>,
}

impl RecordHolds {
    /// The tracker, and the receiver its holds report releases on (pass them to
    /// [`release`](Self::release)).
    pub fn new() -> (RecordHolds, mpsc::UnboundedReceiver<Release>) {
        let (to, releases) = mpsc::unbounded_channel();
        (RecordHolds { partitions: HashMap::new(), durable: HashMap::new(), next_epoch: 1, to }, releases)
    }

    /// `partitions` are now this owner's.
    pub fn assign(&mut self, partitions: &[u32]) {
        for &partition in partitions {
            self.next_epoch += 1;
            self.partitions.insert(partition, PartitionHolds { epoch: self.next_epoch, ..PartitionHolds::default() });
        }
    }

    /// `partitions` went to another owner: their holds no longer count.
    pub fn revoke(&mut self, partitions: &[u32]) {
        for partition in partitions {
            self.partitions.remove(partition);
        }
    }

    /// Whether `partition` is this owner's (assigned and not revoked or given up since).
    pub fn serves(&self, partition: u32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Whether this node already handled the record at `offset` of `partition` durably (in this
    /// or an earlier assignment): it is skipped.
    pub fn handled_before(&self, partition: u32, offset: u64) -> bool {
        self.durable.get(&partition).is_some_and(|&durable| offset <= durable)
    }

    fn record_durable(&mut self, partition: u32, point: u64) {
        let durable = self.durable.entry(partition).or_insert(point);
        *durable = (*durable).max(point);
    }

    /// A hold for a record just taken; `None` if its partition is not assigned.
    pub fn hold(&mut self, partition: u32, offset: u64, cause: u64) -> Option<Hold> {
        self.hold_traced(partition, offset, cause, StanzaSpan::none())
    }

    /// [`hold`](Self::hold) for a record whose span on this node is `trace`: it lasts until the
    /// hold is released.
    pub fn hold_traced(&mut self, partition: u32, offset: u64, cause: u64, trace: StanzaSpan) -> Option<Hold> {
        let holds = self.partitions.get_mut(&partition)?;
        holds.outstanding.insert(offset);
        holds.taken = Some(holds.taken.map_or((offset, offset), |(lowest, highest)| (lowest.min(offset), highest.max(offset))));
        let release = Release { partition, epoch: holds.epoch, offset, failed: false };
        Some(Hold(Arc::new(HoldInner { release, cause, failed: AtomicBool::new(false), to: self.to.clone(), trace })))
    }

    /// Records a release. Returns the partition's new commit point when the release moved it
    /// (the oldest outstanding record went), or the release back if it failed (the caller must
    /// then stop committing and leave the partition to a replay).
    pub fn release(&mut self, release: Release) -> Result<Option<(u32, u64)>, Release> {
        let Some(holds) = self.partitions.get_mut(&release.partition).filter(|holds| holds.epoch == release.epoch) else { return Ok(None) };
        if release.failed {
            return Err(release);
        }
        let was_oldest = holds.outstanding.first() == Some(&release.offset);
        holds.outstanding.remove(&release.offset);
        let moved = if was_oldest { holds.point() } else { None };
        if let Some(point) = moved {
            self.record_durable(release.partition, point);
        }
        Ok(moved.map(|point| (release.partition, point)))
    }

    /// Per partition, the offset to commit (every record up to it released) where it moved since
    /// the last call; the caller commits them.
    pub fn commit_points(&mut self) -> Vec<(u32, u64)> {
        let mut points = Vec::new();
        for (&partition, holds) in &mut self.partitions {
            if let Some(point) = holds.point()
                && holds.committed.is_none_or(|committed| point > committed)
            {
                holds.committed = Some(point);
                points.push((partition, point));
            }
        }
        points.sort_unstable();
        points
    }
}

impl PartitionHolds {
    /// The highest offset up to which every record taken in this assignment was released.
    fn point(&self) -> Option<u64> {
        let (lowest, highest) = self.taken?;
        match self.outstanding.first() {
            Some(&oldest) if oldest > lowest => Some(oldest - 1),
            Some(_) => None,
            None => Some(highest),
        }
    }
}

/// The holds of the stanzas a session node queued towards one client connection on an edge, kept
/// until the edge's inbox acknowledged each. The link's queue is FIFO, so the n-th item queued is
/// the n-th the carrier takes: the holds are counted against the items, not attached to them.
#[derive(Default)]
pub struct LinkHolds {
    state: Mutex<LinkHoldsState>,
}

#[derive(Default)]
struct LinkHoldsState {
    /// The session gave the connection up as too slow: the carrier closes it once drained.
    abandoned: bool,
    queued: u64,
    taken: u64,
    waiting: VecDeque<(u64, Hold)>,
}

impl LinkHolds {
    fn state(&self) -> std::sync::MutexGuard<'_, LinkHoldsState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `queue` (which queues one item on the link, or fails) and, if it queued, counts the
    /// item and keeps `hold` for it. Under the lock, so the carrier cannot take the item between
    /// the two.
    pub fn queue<E>(&self, hold: Option<&Hold>, queue: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let mut state = self.state();
        queue()?;
        state.queued += 1;
        if let Some(hold) = hold {
            let item = state.queued;
            state.waiting.push_back((item, hold.clone()));
        }
        Ok(())
    }

    pub fn abandon(&self) {
        self.state().abandoned = true;
    }

    pub fn abandoned(&self) -> bool {
        self.state().abandoned
    }

    /// The carrier took the next item off the link's queue: the holds kept for it, to drop once
    /// it is durable.
    pub fn take(&self) -> Vec<Hold> {
        let mut state = self.state();
        state.taken += 1;
        let mut holds = Vec::new();
        while state.waiting.front().is_some_and(|(item, _)| *item <= state.taken) {
            holds.extend(state.waiting.pop_front().map(|(_, hold)| hold));
        }
        holds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(releases: &mut mpsc::UnboundedReceiver<Release>, holds: &mut RecordHolds) -> Vec<Release> {
        let mut failed = Vec::new();
        while let Ok(release) = releases.try_recv() {
            if let Err(release) = holds.release(release) {
                failed.push(release);
            }
        }
        failed
    }

    #[test]
    fn commits_up_to_the_oldest_outstanding_record() {
        let (mut holds, mut releases) = RecordHolds::new();
        holds.assign(&[3]);
        let taken: Vec<Hold> = (10..15).map(|offset| holds.hold(3, offset, 0).unwrap()).collect();
        assert_eq!(holds.commit_points(), vec![]);
        let [h10, h11, h12, h13, h14] = <[Hold; 5]>::try_from(taken).unwrap();
        drop((h11, h12));
        drain(&mut releases, &mut holds);
        assert_eq!(holds.commit_points(), vec![], "10 is still held");
        let copy = h10.clone();
        drop(h10);
        drain(&mut releases, &mut holds);
        assert_eq!(holds.commit_points(), vec![], "a clone of 10 lives");
        drop(copy);
        drain(&mut releases, &mut holds);
        assert_eq!(holds.commit_points(), vec![(3, 12)]);
        assert_eq!(holds.commit_points(), vec![], "reported once");
        drop((h13, h14));
        drain(&mut releases, &mut holds);
        assert_eq!(holds.commit_points(), vec![(3, 14)]);
    }

    #[test]
    fn a_release_reports_the_point_it_moved() {
        let (mut holds, mut releases) = RecordHolds::new();
        holds.assign(&[4]);
        let (a, b) = (holds.hold(4, 20, 0).unwrap(), holds.hold(4, 21, 0).unwrap());
        drop(b);
        assert_eq!(holds.release(releases.try_recv().unwrap()), Ok(None), "21 went, 20 still holds the point");
        drop(a);
        assert_eq!(holds.release(releases.try_recv().unwrap()), Ok(Some((4, 21))));
    }

    #[test]
    fn records_handled_before_a_move_are_known_when_the_partition_comes_back() {
        let (mut holds, mut releases) = RecordHolds::new();
        holds.assign(&[6]);
        let (a, b) = (holds.hold(6, 30, 0).unwrap(), holds.hold(6, 31, 0).unwrap());
        drop(a);
        drain(&mut releases, &mut holds);
        holds.revoke(&[6]);
        holds.assign(&[6]);
        assert!(holds.handled_before(6, 30));
        assert!(!holds.handled_before(6, 31), "31 was still held when the partition went");
        drop(b);
        assert!(!holds.handled_before(5, 0));
    }

    #[test]
    fn offset_zero_and_unassigned_partitions() {
        let (mut holds, mut releases) = RecordHolds::new();
        assert!(holds.hold(1, 0, 0).is_none());
        holds.assign(&[1]);
        let first = holds.hold(1, 0, 0).unwrap();
        assert_eq!(holds.commit_points(), vec![]);
        drop(first);
        drain(&mut releases, &mut holds);
        assert_eq!(holds.commit_points(), vec![(1, 0)]);
    }

    #[test]
    fn a_release_from_an_earlier_assignment_does_not_count() {
        let (mut holds, mut releases) = RecordHolds::new();
        holds.assign(&[2]);
        let before = holds.hold(2, 5, 0).unwrap();
        holds.revoke(&[2]);
        holds.assign(&[2]);
        let replayed = holds.hold(2, 5, 0).unwrap();
        drop(before);
        drain(&mut releases, &mut holds);
        assert_eq!(holds.commit_points(), vec![], "the replay of 5 is still held");
        drop(replayed);
        drain(&mut releases, &mut holds);
        assert_eq!(holds.commit_points(), vec![(2, 5)]);
    }

    #[test]
    fn a_failed_hold_is_reported() {
        let (mut holds, mut releases) = RecordHolds::new();
        holds.assign(&[0]);
        let hold = holds.hold(0, 7, 0).unwrap();
        hold.clone().fail();
        drop(hold);
        let failed = drain(&mut releases, &mut holds);
        assert_eq!(failed, vec![Release { partition: 0, epoch: failed[0].epoch, offset: 7, failed: true }]);
    }

    #[test]
    fn link_holds_follow_the_queue_order() {
        let (mut holds, _releases) = RecordHolds::new();
        holds.assign(&[0]);
        let link = LinkHolds::default();
        let a = holds.hold(0, 1, 0).unwrap();
        let b = holds.hold(0, 2, 0).unwrap();
        link.queue(None, || Ok::<_, ()>(())).unwrap();
        link.queue(Some(&a), || Ok::<_, ()>(())).unwrap();
        assert_eq!(link.queue(Some(&b), || Err(())), Err(()), "not queued, not kept");
        link.queue(Some(&b), || Ok::<_, ()>(())).unwrap();
        assert!(link.take().is_empty());
        assert_eq!(link.take().len(), 1);
        assert_eq!(link.take().len(), 1);
        assert!(link.take().is_empty());
    }
}
