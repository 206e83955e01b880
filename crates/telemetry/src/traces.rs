//! OpenTelemetry traces of client stanzas across the cluster. A stanza is sampled once, where it
//! enters (the edge); its context travels in each bus record's envelope (`traceparent`, W3C Trace
//! Context) and every node that handles a record of it continues the trace. Nothing is traced —
//! no ids drawn, no spans — unless `[telemetry] otlp_endpoint` is set, and then only the sampled
//! share; an unsampled record carries an empty `traceparent` and costs the next node nothing.
//!
//! Spans come from the OpenTelemetry SDK directly rather than from `tracing` spans through
//! tracing-opentelemetry: a stanza's spans last for stretches that are not scopes (a session
//! node's span lives in the record's hold until every effect is durable, the archive's across a
//! batch), and a `tracing` layer would be paid by every span of the process, sampled or not.
//! Log lines written while a traced stanza is handled carry its trace id through
//! [`StanzaSpan::log_scope`].

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanBuilder, SpanContext, SpanKind, TraceContextExt, Tracer as _};
pub use opentelemetry::KeyValue;
use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Where traces go and how many stanzas are traced.
pub struct TraceSettings<'a> {
    /// The OTLP/HTTP (protobuf) traces endpoint, e.g. `http://collector:4318/v1/traces`.
    pub endpoint: &'a str,
    /// The share of stanzas entering at an edge that start a trace (0.0–1.0). A record that
    /// arrives traced is always continued.
    pub sample_ratio: f64,
    /// `service.instance.id`: the node id, which tells the hops of one trace apart.
    pub node: &'a str,
    pub role: &'a str,
}

/// The exporter: flushes what is buffered when shut down.
pub struct TraceExport(SdkTracerProvider);

impl TraceExport {
    /// Sends the spans still buffered (bounded by the exporter's timeout).
    pub fn shutdown(self) {
        if let Err(error) = self.0.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(%error, "traces not all exported at shutdown");
        }
    }
}

/// Starts exporting spans (once per process; a second call is refused).
pub fn start_export(settings: &TraceSettings<'_>) -> Result<TraceExport, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| format!("OTLP exporter: {error}"))?;
    let resource = Resource::builder()
        .with_service_name("starling")
        .with_attributes([KeyValue::new("service.instance.id", settings.node.to_owned()), KeyValue::new("starling.role", settings.role.to_owned())])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio))))
        .with_resource(resource)
        .build();
    TRACER
        .set(opentelemetry::trace::TracerProvider::tracer(&provider, "starling"))
        .map_err(|_| "traces are exported already".to_owned())?;
    Ok(TraceExport(provider))
}

/// The span of one stanza on one node, or nothing (tracing off, or the stanza not sampled).
/// The span ends when this is dropped.
#[derive(Default)]
pub struct StanzaSpan(Option<Box<Traced>>);

struct Traced {
    span: opentelemetry_sdk::trace::Span,
    /// Carries the trace id into log lines.
    log: tracing::Span,
}

impl StanzaSpan {
    pub const fn none() -> StanzaSpan {
        StanzaSpan(None)
    }

    /// A new trace for a stanza entering the cluster at `arrived`, if the sampler picks it.
    /// `attributes` are only made for a traced stanza.
    pub fn start(name: &'static str, arrived: Instant, attributes: impl FnOnce() -> Vec<KeyValue>) -> StanzaSpan {
        let Some(tracer) = TRACER.get() else { return StanzaSpan::none() };
        let started = SystemTime::now().checked_sub(arrived.elapsed()).unwrap_or_else(SystemTime::now);
        StanzaSpan::begin(tracer, name, started, &Context::new(), attributes)
    }

    /// Continues the trace a bus record carries (`traceparent`; empty when it has none).
    pub fn continued(name: &'static str, traceparent: &str, attributes: impl FnOnce() -> Vec<KeyValue>) -> StanzaSpan {
        let Some(tracer) = TRACER.get().filter(|_| !traceparent.is_empty()) else { return StanzaSpan::none() };
        let parent = TraceContextPropagator::new().extract(&TraceParent(traceparent));
        if !parent.span().span_context().is_sampled() {
            return StanzaSpan::none();
        }
        StanzaSpan::begin(tracer, name, SystemTime::now(), &parent, attributes)
    }

    /// A span under this one (none when this is none), started at `started`.
    pub fn child(&self, name: &'static str, started: SystemTime) -> StanzaSpan {
        let (Some(tracer), Some(traced)) = (TRACER.get(), &self.0) else { return StanzaSpan::none() };
        let parent = Context::new().with_remote_span_context(traced.span.span_context().clone());
        StanzaSpan::begin(tracer, name, started, &parent, Vec::new)
    }

    fn begin(tracer: &SdkTracer, name: &'static str, started: SystemTime, parent: &Context, attributes: impl FnOnce() -> Vec<KeyValue>) -> StanzaSpan {
        let builder = SpanBuilder::from_name(Cow::Borrowed(name)).with_kind(SpanKind::Internal).with_start_time(started);
        let mut span = tracer.build_with_context(builder, parent);
        if !span.span_context().is_sampled() {
            return StanzaSpan::none();
        }
        span.set_attributes(attributes());
        let log = tracing::info_span!("stanza", trace_id = %span.span_context().trace_id());
        StanzaSpan(Some(Box::new(Traced { span, log })))
    }

    pub fn is_traced(&self) -> bool {
        self.0.is_some()
    }

    /// This span's context for the records it causes; empty when not traced.
    pub fn traceparent(&self) -> String {
        let Some(traced) = &self.0 else { return String::new() };
        traceparent_of(traced.span.span_context())
    }

    pub fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(traced) = &mut self.0 {
            traced.span.set_attribute(attribute);
        }
    }

    /// A `tracing` span with the trace id, to enter (or instrument a future with) while the
    /// stanza is handled, so that log lines name the trace; `Span::none()` when not traced.
    pub fn log_scope(&self) -> tracing::Span {
        self.0.as_ref().map_or_else(tracing::Span::none, |traced| traced.log.clone())
    }
}

impl std::fmt::Debug for StanzaSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(traced) => write!(f, "StanzaSpan({})", traced.span.span_context().trace_id()),
            None => f.write_str("StanzaSpan(none)"),
        }
    }
}

fn traceparent_of(context: &SpanContext) -> String {
    let mut carrier = TraceParentOut(String::new());
    TraceContextPropagator::new().inject_context(&Context::new().with_remote_span_context(context.clone()), &mut carrier);
    carrier.0
}

/// A record's `traceparent`, read by the propagator.
struct TraceParent<'a>(&'a str);

impl Extractor for TraceParent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

struct TraceParentOut(String);

impl Injector for TraceParentOut {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_export_nothing_is_traced_and_no_context_travels() {
        let span = StanzaSpan::start("starling.edge.receive", Instant::now(), || panic!("attributes of an untraced stanza"));
        assert!(!span.is_traced());
        assert_eq!(span.traceparent(), "");
        let continued = StanzaSpan::continued("starling.session.handle", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Vec::new);
        assert!(!continued.is_traced());
        assert!(!continued.child("starling.archive.write", SystemTime::now()).is_traced());
    }

    #[test]
    fn a_span_context_is_written_as_w3c_traceparent() {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
        let context = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("id"),
            SpanId::from_hex("b7ad6b7169203331").expect("id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let written = traceparent_of(&context);
        assert_eq!(written, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let read = TraceContextPropagator::new().extract(&TraceParent(&written));
        assert_eq!(read.span().span_context().trace_id(), context.trace_id());
        assert!(read.span().span_context().is_sampled());
        let garbage = TraceContextPropagator::new().extract(&TraceParent("not a trace"));
        assert!(!garbage.span().span_context().is_valid());
    }
}
