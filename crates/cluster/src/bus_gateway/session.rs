//! A connection bound through the bus, as the edge's bound stream sees it: its stanzas and what
//! the client says about its stream become records on the owner partition of its user, pipelined
//! behind each other ([`InFlight`]), counted for stream management as the owner counts them.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use starling_protocol::{Jid, Stanza};

use super::{unavailable, BusGateway};
use crate::bus::InFlight;
use crate::envelope::OwnerRecord;
use crate::gateway::{BoundSession, ClientEvent, DrainReports, GatewayError, StreamEnd};
use crate::stream_copy::StreamCopy;
use starling_telemetry::traces::{KeyValue, StanzaSpan};

/// Client stanzas of one connection queued on the bus but not yet acknowledged, at most.
const SESSION_IN_FLIGHT: usize = 256;

pub(super) struct BusSession {
    gateway: Arc<BusGateway>,
    jid: Jid,
    connection: u64,
    copy: Arc<StreamCopy>,
    /// A client's stanzas are pipelined: queued in order, acknowledged in the background, and a
    /// failed acknowledgement ends the connection at its next stanza.
    in_flight: InFlight,
}

impl BusSession {
    pub(super) fn boxed(gateway: Arc<BusGateway>, jid: Jid, connection: u64, copy: Arc<StreamCopy>) -> Box<dyn BoundSession> {
        Box::new(BusSession { gateway, jid, connection, copy, in_flight: InFlight::new(SESSION_IN_FLIGHT) })
    }

    /// Queues a record of this connection behind the ones before it; `traceparent`: a traced
    /// stanza's span (empty otherwise).
    async fn pipeline(&mut self, record: OwnerRecord, traceparent: String) -> Result<(), GatewayError> {
        let queued = self.gateway.publish(&self.jid, &record, traceparent).await;
        self.in_flight.push(queued, Vec::new()).await.map_err(unavailable)
    }

    fn event_record(&self, event: ClientEvent) -> OwnerRecord {
        OwnerRecord::ClientEvent { jid: self.jid.clone(), connection: self.connection, event }
    }

    async fn event(&mut self, event: ClientEvent) -> Result<(), GatewayError> {
        let record = self.event_record(event);
        self.pipeline(record, String::new()).await
    }

    /// Queues a record that stream management counts as one of the client's stanzas handled.
    async fn counted(&mut self, record: OwnerRecord, traceparent: String) -> Result<(), GatewayError> {
        let copy = self.copy.clone();
        let mut handled = copy.handled.lock().await;
        self.pipeline(record, traceparent).await?;
        if let Some(handled) = handled.as_mut() {
            *handled = handled.wrapping_add(1);
        }
        Ok(())
    }
}

#[async_trait]
impl BoundSession for BusSession {
    fn jid(&self) -> &Jid {
        &self.jid
    }

    async fn submit(&mut self, stanza: Stanza, received: Instant) -> Result<(), GatewayError> {
        // A sampled stanza starts its trace here, from when it was read; the span lasts until
        // the bus has queued its record.
        let span = StanzaSpan::start("starling.edge.receive", received, || stanza_attributes(&stanza));
        let record = OwnerRecord::FromClient { resource: self.jid.clone(), connection: self.connection, stanza, received };
        self.counted(record, span.traceparent()).await
    }

    async fn enable_stream_management(&mut self, resume: bool, max: Option<u32>) -> Result<(), GatewayError> {
        let copy = self.copy.clone();
        let mut handled = copy.handled.lock().await;
        self.event(ClientEvent::Enable { resume, max }).await?;
        *handled = Some(0);
        Ok(())
    }

    async fn acknowledge(&mut self, h: u32) -> Result<(), GatewayError> {
        self.copy.acknowledge(h);
        self.event(ClientEvent::Acknowledge(h)).await
    }

    async fn answer_for_edge(&mut self, reply: Bytes) -> Result<(), GatewayError> {
        let record = self.event_record(ClientEvent::AnswerForEdge(reply));
        self.counted(record, String::new()).await
    }

    async fn set_client_state(&mut self, active: bool) -> Result<(), GatewayError> {
        self.event(ClientEvent::ClientState { active }).await
    }

    async fn unbind(self: Box<Self>, end: StreamEnd) {
        if let Some(link) = self.gateway.links().remove(&self.connection) {
            self.gateway.forget(self.connection, &link);
        }
        let unbind = OwnerRecord::Unbind { jid: self.jid.clone(), connection: self.connection, end };
        if let Err(error) = self.gateway.publish_durably(&self.jid, &unbind).await {
            tracing::warn!(jid = %self.jid, %error, "could not tell the owner that a resource went away");
        }
    }

    /// Answers reach the owner in order with what else this edge queues for it without waiting;
    /// one lost to a full queue is asked for again by the owner's carrier.
    fn drain_reports(&self) -> Option<DrainReports> {
        let (gateway, jid, connection) = (self.gateway.clone(), self.jid.clone(), self.connection);
        Some(Arc::new(move |count| {
            let record = OwnerRecord::ClientEvent { jid: jid.clone(), connection, event: ClientEvent::Drained(count) };
            if !gateway.queue_for_owner(&jid, &record) {
                tracing::debug!(%jid, connection, "too many records queued for owners; a drain report waits for the next ask");
            }
        }))
    }
}

/// What a trace shows of a stanza: its kind, type and id (to find it by), not who sent it to whom.
fn stanza_attributes(stanza: &Stanza) -> Vec<KeyValue> {
    let mut attributes = vec![KeyValue::new("xmpp.stanza", stanza.kind.as_str())];
    attributes.extend(stanza.stanza_type.clone().map(|kind| KeyValue::new("xmpp.type", kind)));
    attributes.extend(stanza.id.clone().map(|id| KeyValue::new("xmpp.id", id)));
    attributes
}
