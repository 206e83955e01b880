//! The carrier of a link to a connection on another node's edge: a bounded queue drained in order
//! onto the edge's inbox, no further ahead of what the client has read than the link's
//! [`Window`] lets it (flow control, see `starling_cluster::window`). A burst — a takeover's
//! replay, a login's backlog — waits here, in a queue as long as the edge's, and goes out as fast
//! as the client reads, instead of overrunning the edge's queue and getting the client cut there.
//! When this queue is full too, the session layer gives the connection up as too slow and keeps
//! what did not fit (offline storage, or a stream-managed session's unacknowledged stanzas). A
//! client that reads nothing at all for [`STALLED_AFTER`] is no longer waited for: what waits goes
//! to the edge, whose own full queue then ends the stream and hands the rest back — so a stalled
//! client never holds its partition's commits back for long. The holds of what the carrier takes
//! go once the bus has each item.

use std::sync::Arc;
use std::time::Duration;

use starling_cluster::bus::{Bus, InFlight};
use starling_cluster::envelope::{EdgeRecord, Origin};
use starling_cluster::gateway::{ClientLink, ToClient, Window};
use starling_cluster::hold::{traceparent, LinkHolds};
use starling_protocol::{StreamError, StreamErrorCondition};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A closed window that has not moved for this long is asked about again: an answer may have
/// been lost (an edge's full queue to the owners), and a link whose session let go must notice.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Records of one link published but not yet acknowledged by the bus, at most.
const IN_FLIGHT: usize = 1024;

/// A client whose window stays closed this long reads nothing: it is no longer waited for.
const STALLED_AFTER: Duration = Duration::from_secs(10);

/// Starts the carrier of a link to `connection` on `edge`, with a queue of `capacity`; `window`:
/// `None` for a component, whose edge takes what its queue can and refuses the rest itself.
pub(crate) fn carry(bus: Arc<dyn Bus>, origin: Arc<Origin>, edge: String, connection: u64, capacity: usize, window: Option<Arc<Window>>) -> ClientLink {
    let (sender, mut queued) = mpsc::channel::<ToClient>(capacity);
    let holds = Arc::new(LinkHolds::default());
    let link = ClientLink::held(connection, sender, holds.clone(), window.clone());
    tokio::spawn(async move {
        let mut in_flight = InFlight::new(IN_FLIGHT);
        let mut window = window;
        let mut last_moved = Instant::now();
        let publish = |message: ToClient, traceparent: String| {
            let (bus, edge) = (bus.clone(), edge.clone());
            let bytes = EdgeRecord { connection, message }.encode(&origin, traceparent);
            async move { bus.publish_edge(&edge, bytes).await }
        };
        loop {
            // What is left once the session let go (an unbind, a slow client given up) goes at
            // once: the edge hands back what its connection cannot take.
            let open = window.as_ref().is_none_or(|window| window.is_open()) || queued.is_closed();
            if open {
                last_moved = Instant::now();
            } else if last_moved.elapsed() >= STALLED_AFTER {
                tracing::info!(%edge, connection, "a client read nothing for a while; what waits for it goes to its edge");
                window = None;
                continue;
            }
            let result = tokio::select! {
                next = queued.recv(), if open => {
                    let Some(message) = next else { break };
                    let taken = holds.take();
                    let traced = traceparent(&taken);
                    let mut result = in_flight.push(publish(message, traced).await, taken).await;
                    if let Some(ask) = window.as_ref().and_then(|window| window.sent_one()) {
                        result = result.and(in_flight.push(publish(ToClient::DrainedAsk(ask), String::new()).await, Vec::new()).await);
                    }
                    result
                }
                moved = moved_or_timed_out(window.as_deref()), if !open => match moved {
                    true => {
                        last_moved = Instant::now();
                        Ok(())
                    }
                    false if queued.is_closed() => Ok(()),
                    false => {
                        let sent = window.as_ref().map_or(0, |window| window.sent());
                        in_flight.push(publish(ToClient::DrainedAsk(sent), String::new()).await, Vec::new()).await
                    }
                },
                done = in_flight.next_done() => done,
            };
            if let Err(error) = result {
                tracing::warn!(%edge, connection, %error, "could not reach a connection's edge");
                starling_telemetry::Metrics::global().bus_publish_errors.inc();
            }
        }
        if holds.abandoned() {
            // The session gave the connection up as too slow: the edge ends its stream, as it
            // does itself when its own queue to the client overflows.
            let close = ToClient::Close(StreamError::new(StreamErrorCondition::PolicyViolation));
            let _ = in_flight.push(publish(close, String::new()).await, Vec::new()).await;
        }
        while !in_flight.is_empty() {
            let _ = in_flight.next_done().await;
        }
    });
    link
}

/// True when the window moved, false after [`ASK_AGAIN_AFTER`] without.
async fn moved_or_timed_out(window: Option<&Window>) -> bool {
    match window {
        Some(window) => tokio::time::timeout(ASK_AGAIN_AFTER, window.moved()).await.is_ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use starling_cluster::bus::{EdgeInbox, MemoryBus};

    use super::*;

    /// What reaches the edge within a while: the stanzas' bodies and the asks, in order.
    async fn arrived(inbox: &mut Box<dyn EdgeInbox>, wait: Duration) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(record) = tokio::time::timeout(wait, inbox.next()).await {
            match EdgeRecord::decode(record.expect("record")).expect("edge record").message {
                ToClient::Stanza(bytes, _) => got.push(String::from_utf8_lossy(&bytes).into_owned()),
                ToClient::DrainedAsk(count) => got.push(format!("ask {count}")),
                other => got.push(format!("{other:?}")),
            }
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn sends_half_an_edge_queue_ahead_of_the_client_then_as_it_reads_and_not_for_ever() {
        let bus = Arc::new(MemoryBus::new(4));
        let mut inbox = bus.edge_inbox("edge").await.expect("inbox");
        // An edge queue of 8: a window of 4, an ask after each item.
        let window = Arc::new(Window::for_client_queue(8));
        let link = carry(bus.clone(), Arc::new(Origin::new("owner")), "edge".into(), 7, 32, Some(window));
        for n in 0..12 {
            link.try_send(ToClient::Stanza(Bytes::from(n.to_string()), None), None).expect("queued");
        }
        let short = Duration::from_millis(100);
        assert_eq!(arrived(&mut inbox, short).await, ["0", "ask 1", "1", "ask 2", "2", "ask 3", "3", "ask 4"]);
        link.drained(2);
        assert_eq!(arrived(&mut inbox, short).await, ["4", "ask 5", "5", "ask 6"]);
        // No answer for a second: asked again (an answer may have been lost).
        tokio::time::sleep(ASK_AGAIN_AFTER).await;
        assert_eq!(arrived(&mut inbox, short).await, ["ask 6"]);
        // Nothing read for long: the rest goes to the edge, whose own queue decides.
        let rest = arrived(&mut inbox, ASK_AGAIN_AFTER * 2).await;
        assert_eq!(rest.iter().filter(|item| !item.starts_with("ask")).cloned().collect::<Vec<_>>(), ["6", "7", "8", "9", "10", "11"]);
    }
}
