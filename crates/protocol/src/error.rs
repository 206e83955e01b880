//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3).
//!
//! Conditions are closed enums rather than strings so that a handler cannot invent a condition a
//! client would not understand, and so that each stanza condition carries the error type the RFC
//! recommends for it: callers say *what* went wrong and get a conforming `type` for free.
//!
//! Over 400 lines with its tests: two closed tables of RFC conditions with their wire names and types.

use starling_xml::{Element, FrameError, escape_text};

use crate::ns;

named_enum! {
    /// The defined stream error conditions of RFC 6120 §4.9.3.
    StreamErrorCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        /// The RFC puts the other host in the element's text; this type does not carry it.
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
}

named_enum! {
    /// The stanza error types of RFC 6120 §8.3.2: what the sender may do about the error.
    ErrorType {
        /// Retry after providing credentials.
        Auth => "auth",
        /// Do not retry: the error cannot be remedied.
        Cancel => "cancel",
        /// Proceed: the condition was only a warning.
        Continue => "continue",
        /// Retry after changing the data sent.
        Modify => "modify",
        /// Retry after waiting: the error is temporary.
        Wait => "wait",
    }
}

named_enum! {
    /// The defined stanza error conditions of RFC 6120 §8.3.3.
    StanzaErrorCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        /// The RFC allows a new address as the element's text; this type does not carry it.
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        /// The RFC allows the redirect target as the element's text; this type does not carry it.
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
}

impl StanzaErrorCondition {
    /// The error type RFC 6120 §8.3.3 recommends for this condition. Where the RFC offers two
    /// (feature-not-implemented, policy-violation, unexpected-request), the first one it names;
    /// undefined-condition has none and gets `cancel`, the safe choice that stops retries.
    pub fn default_type(self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => ErrorType::Modify,
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => ErrorType::Auth,
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => ErrorType::Wait,
            Conflict
            | FeatureNotImplemented
            | Gone
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }
}

/// A stream-level error: sent once, after which the stream is closed (RFC 6120 §4.9.1.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream error <{condition}/>{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    /// Human-readable detail for logs and debugging; RFC 6120 §4.9.2 says it is never to be
    /// shown to end users, so it may be technical.
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> StreamError {
        StreamError { condition, text: None }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> StreamError {
        self.text = Some(text.into());
        self
    }

    /// The error to send when framing failed, or `None` when the transport itself is gone
    /// (I/O error, peer closed) and there is nobody to send it to.
    pub fn for_frame_error(error: &FrameError) -> Option<StreamError> {
        let (condition, text) = match error {
            FrameError::NotWellFormed(reason) => (StreamErrorCondition::NotWellFormed, Some(reason.clone())),
            FrameError::Restricted(what) => (StreamErrorCondition::RestrictedXml, Some((*what).to_owned())),
            FrameError::LimitExceeded(what) => (StreamErrorCondition::PolicyViolation, Some((*what).to_owned())),
            FrameError::InvalidNamespace => (StreamErrorCondition::InvalidNamespace, None),
            FrameError::BadFormat(what) => (StreamErrorCondition::BadFormat, Some((*what).to_owned())),
            FrameError::Io(_) | FrameError::Closed => return None,
        };
        Some(StreamError { condition, text })
    }

    /// Serialises as `<stream:error>` for writing inside our stream, whose header declares the
    /// `stream` prefix (RFC 6120 §4.9.2); the children declare the streams-errors namespace.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.write(b"<stream:error>")
    }

    /// Serialises as `<stream:error>` declaring the `stream` prefix itself, for a framing with no
    /// stream header around it (a WebSocket message, RFC 7395 §3.6).
    pub fn to_standalone_bytes(&self) -> Vec<u8> {
        self.write(b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'>")
    }

    fn write(&self, start_tag: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(start_tag);
        out.push(b'<');
        out.extend_from_slice(self.condition.as_str().as_bytes());
        out.extend_from_slice(b" xmlns='");
        out.extend_from_slice(ns::STREAM_ERRORS.as_bytes());
        out.extend_from_slice(b"'/>");
        if let Some(text) = &self.text {
            out.extend_from_slice(b"<text xmlns='");
            out.extend_from_slice(ns::STREAM_ERRORS.as_bytes());
            out.extend_from_slice(b"'>");
            escape_text(&mut out, text);
            out.extend_from_slice(b"</text>");
        }
        out.extend_from_slice(b"</stream:error>");
        out
    }

    /// Reads a `<stream:error/>` element (as the reader hands it over, namespace resolved), e.g.
    /// one received from a peer server. An unknown condition is read as `undefined-condition`.
    pub fn from_element(element: &Element) -> Option<StreamError> {
        if !element.is("error", ns::STREAMS) {
            return None;
        }
        let mut condition = None;
        let mut text = None;
        for child in element.children().filter(|c| c.ns() == ns::STREAM_ERRORS) {
            if child.name() == "text" {
                text = Some(child.text());
            } else if condition.is_none() {
                condition =
                    Some(StreamErrorCondition::parse(child.name()).unwrap_or(StreamErrorCondition::UndefinedCondition));
            }
        }
        Some(StreamError { condition: condition?, text })
    }
}

impl From<StreamErrorCondition> for StreamError {
    fn from(condition: StreamErrorCondition) -> StreamError {
        StreamError::new(condition)
    }
}

/// A stanza-level error (RFC 6120 §8.3): the `<error/>` child of a stanza of type `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stanza error <{condition}/> ({error_type}){}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
pub struct StanzaError {
    pub error_type: ErrorType,
    pub condition: StanzaErrorCondition,
    pub text: Option<String>,
    /// The entity that detected the error (RFC 6120 §8.3.2 `by`), if the generator says so.
    pub by: Option<String>,
    /// An application-specific condition (RFC 6120 §8.3.4), e.g. XEP-0060's
    /// `<precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>`.
    pub app: Option<Element>,
}

impl StanzaError {
    /// An error with the type the RFC recommends for `condition`.
    pub fn new(condition: StanzaErrorCondition) -> StanzaError {
        StanzaError { error_type: condition.default_type(), condition, text: None, by: None, app: None }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> StanzaError {
        self.text = Some(text.into());
        self
    }

    /// Overrides the recommended type, for the conditions where the RFC allows another.
    pub fn with_type(mut self, error_type: ErrorType) -> StanzaError {
        self.error_type = error_type;
        self
    }

    pub fn with_by(mut self, by: impl Into<String>) -> StanzaError {
        self.by = Some(by.into());
        self
    }

    pub fn with_app(mut self, condition: Element) -> StanzaError {
        self.app = Some(condition);
        self
    }

    /// The `<error/>` element, in `jabber:client` (the namespace of the stanza it goes into).
    pub fn to_element(&self) -> Element {
        let mut error = Element::new("error", ns::CLIENT).with_attr("type", self.error_type.as_str());
        if let Some(by) = &self.by {
            error.set_attr("by", by.as_str());
        }
        error.push_child(Element::new(self.condition.as_str(), ns::STANZA_ERRORS));
        if let Some(text) = &self.text {
            error.push_child(Element::new("text", ns::STANZA_ERRORS).with_text(text.as_str()));
        }
        if let Some(app) = &self.app {
            error.push_child(app.clone());
        }
        error
    }

    /// Reads an `<error/>` element in `jabber:client` or `jabber:server`, or the `<error/>` child
    /// of a stanza given whole. `None` when there is no such element or it names no condition.
    ///
    /// Received errors are read leniently, because what matters is reacting to them: an unknown
    /// condition in the stanzas namespace becomes `undefined-condition`, and a missing or unknown
    /// `type` becomes the condition's recommended type.
    pub fn from_element(element: &Element) -> Option<StanzaError> {
        let error = if element.name() == "error" { element } else { element.get_child("error", element.ns())? };
        if error.name() != "error" || !(error.ns() == ns::CLIENT || error.ns() == ns::SERVER) {
            return None;
        }
        let mut condition = None;
        let mut text = None;
        for child in error.children().filter(|c| c.ns() == ns::STANZA_ERRORS) {
            if child.name() == "text" {
                text = Some(child.text());
            } else if condition.is_none() {
                condition =
                    Some(StanzaErrorCondition::parse(child.name()).unwrap_or(StanzaErrorCondition::UndefinedCondition));
            }
        }
        let condition = condition?;
        let error_type = error.attr("type").and_then(ErrorType::parse).unwrap_or_else(|| condition.default_type());
        let app = error.children().find(|c| c.ns() != ns::STANZA_ERRORS).cloned();
        Some(StanzaError { error_type, condition, text, by: error.attr("by").map(str::to_owned), app })
    }
}

impl From<StanzaErrorCondition> for StanzaError {
    fn from(condition: StanzaErrorCondition) -> StanzaError {
        StanzaError::new(condition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn parse(xml: &str) -> Element {
        match Element::parse(xml.as_bytes()) {
            Ok(e) => e,
            Err(err) => panic!("test XML should parse: {err}"),
        }
    }

    #[test]
    fn stream_conditions_cover_rfc6120_4_9_3() {
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        for &c in StreamErrorCondition::ALL {
            assert_eq!(StreamErrorCondition::parse(c.as_str()), Some(c));
        }
        assert_eq!(StreamErrorCondition::SeeOtherHost.as_str(), "see-other-host");
        assert_eq!(StreamErrorCondition::parse("xml-not-well-formed"), None);
    }

    /// RFC 6120 §4.9.3.13 (not-well-formed): the condition alone.
    #[test]
    fn stream_error_without_text() {
        let e = StreamError::new(StreamErrorCondition::NotWellFormed);
        assert_eq!(
            String::from_utf8_lossy(&e.to_bytes()),
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        );
    }

    /// RFC 6120 §4.9.3.17 (resource-constraint) and §4.9.2 (text), with escaping.
    #[test]
    fn stream_error_with_text() {
        let e = StreamError::new(StreamErrorCondition::ResourceConstraint).with_text("too many <streams> & more");
        assert_eq!(
            String::from_utf8_lossy(&e.to_bytes()),
            "<stream:error><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too many &lt;streams&gt; &amp; more</text></stream:error>"
        );
    }

    #[test]
    fn stream_error_bytes_parse_back() {
        // Our bytes rely on the stream header's prefix declaration, so wrap them in one.
        let e = StreamError::new(StreamErrorCondition::SystemShutdown).with_text("bye");
        let mut doc = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>".to_vec();
        doc.extend_from_slice(&e.to_bytes());
        doc.extend_from_slice(b"</stream:stream>");
        let wrapper = parse(&String::from_utf8_lossy(&doc));
        let error = wrapper.get_child("error", ns::STREAMS).expect("stream error element");
        assert_eq!(StreamError::from_element(error), Some(e));
    }

    /// RFC 6120 §4.9.4 shows an application-specific condition next to a defined one.
    #[test]
    fn stream_error_from_element_ignores_application_conditions() {
        let e = parse(
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>\
               <not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
               <text xml:lang='en' xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Some special application diagnostic information!</text>\
               <escape-your-data xmlns='http://example.org/ns'/>\
             </stream:error>",
        );
        let e = StreamError::from_element(&e).expect("a stream error");
        assert_eq!(e.condition, StreamErrorCondition::NotWellFormed);
        assert_eq!(e.text.as_deref(), Some("Some special application diagnostic information!"));
    }

    #[test]
    fn frame_errors_map_to_stream_conditions() {
        use StreamErrorCondition as C;
        let cases = [
            (FrameError::NotWellFormed("mismatched tag".into()), C::NotWellFormed, Some("mismatched tag")),
            (FrameError::Restricted("comment"), C::RestrictedXml, Some("comment")),
            (FrameError::LimitExceeded("element size"), C::PolicyViolation, Some("element size")),
            (FrameError::InvalidNamespace, C::InvalidNamespace, None),
            (FrameError::BadFormat("text between stanzas"), C::BadFormat, Some("text between stanzas")),
        ];
        for (frame, condition, text) in cases {
            let e = StreamError::for_frame_error(&frame).expect("something to send");
            assert_eq!(e.condition, condition, "{frame}");
            assert_eq!(e.text.as_deref(), text);
        }
        assert_eq!(StreamError::for_frame_error(&FrameError::Closed), None);
        assert_eq!(StreamError::for_frame_error(&FrameError::Io(io::Error::other("reset"))), None);
    }

    #[test]
    fn error_types() {
        assert_eq!(ErrorType::ALL.len(), 5);
        for &t in ErrorType::ALL {
            assert_eq!(ErrorType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ErrorType::parse("Cancel"), None);
    }

    #[test]
    fn stanza_conditions_cover_rfc6120_8_3_3() {
        assert_eq!(StanzaErrorCondition::ALL.len(), 22);
        for &c in StanzaErrorCondition::ALL {
            assert_eq!(StanzaErrorCondition::parse(c.as_str()), Some(c));
        }
    }

    /// The types RFC 6120 §8.3.3 gives (in its text and examples) for each condition.
    #[test]
    fn default_types_follow_rfc6120() {
        use ErrorType::*;
        use StanzaErrorCondition as C;
        let expected = [
            (C::BadRequest, Modify),
            (C::Conflict, Cancel),
            (C::FeatureNotImplemented, Cancel),
            (C::Forbidden, Auth),
            (C::Gone, Cancel),
            (C::InternalServerError, Cancel),
            (C::ItemNotFound, Cancel),
            (C::JidMalformed, Modify),
            (C::NotAcceptable, Modify),
            (C::NotAllowed, Cancel),
            (C::NotAuthorized, Auth),
            (C::PolicyViolation, Modify),
            (C::RecipientUnavailable, Wait),
            (C::Redirect, Modify),
            (C::RegistrationRequired, Auth),
            (C::RemoteServerNotFound, Cancel),
            (C::RemoteServerTimeout, Wait),
            (C::ResourceConstraint, Wait),
            (C::ServiceUnavailable, Cancel),
            (C::SubscriptionRequired, Auth),
            (C::UndefinedCondition, Cancel),
            (C::UnexpectedRequest, Wait),
        ];
        assert_eq!(expected.len(), C::ALL.len());
        for (condition, error_type) in expected {
            assert_eq!(condition.default_type(), error_type, "{condition}");
            assert_eq!(StanzaError::new(condition).error_type, error_type);
        }
    }

    /// RFC 6120 §8.3.3.19 (service-unavailable): `<error type='cancel'><service-unavailable/></error>`.
    #[test]
    fn stanza_error_to_element() {
        let e = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
        assert_eq!(
            String::from_utf8_lossy(&e.to_element().to_bytes()),
            "<error xmlns='jabber:client' type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        );
        let e = StanzaError::new(StanzaErrorCondition::Conflict)
            .with_by("example.net")
            .with_text("resource <balcony> is taken");
        let mut out = Vec::new();
        e.to_element().write_in_ns(&mut out, ns::CLIENT);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<error type='cancel' by='example.net'>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>resource &lt;balcony&gt; is taken</text></error>"
        );
    }

    /// RFC 6120 §8.3.2's example: an IQ error with `by`, a defined condition, text and an
    /// application-specific condition.
    #[test]
    fn stanza_error_from_rfc_example() {
        let iq = parse(
            "<iq from='im.example.com' id='ur6vz452' to='juliet@im.example.com/balcony' type='error' xmlns='jabber:client'>\
               <error by='im.example.com' type='cancel'>\
                 <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                 <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>This service is not available</text>\
                 <special-application-condition xmlns='http://example.org/ns'/>\
               </error>\
             </iq>",
        );
        let expected = StanzaError::new(StanzaErrorCondition::ServiceUnavailable)
            .with_by("im.example.com")
            .with_text("This service is not available")
            .with_app(Element::new("special-application-condition", "http://example.org/ns"));
        assert_eq!(StanzaError::from_element(&iq), Some(expected.clone()));
        let error = iq.get_child("error", ns::CLIENT).expect("error child");
        assert_eq!(StanzaError::from_element(error), Some(expected));
    }

    /// RFC 6120 §8.3.3.4 (forbidden) in a presence error, and a jabber:server error.
    #[test]
    fn stanza_error_from_other_examples() {
        let presence = parse(
            "<presence xmlns='jabber:client' from='characters@muc.example.com/JulieC' id='y2bs71v4' \
               to='juliet@im.example.com/balcony' type='error'>\
               <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>\
             </presence>",
        );
        assert_eq!(StanzaError::from_element(&presence), Some(StanzaError::new(StanzaErrorCondition::Forbidden)));
        let s2s = parse(
            "<error xmlns='jabber:server' type='wait'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        );
        assert_eq!(StanzaError::from_element(&s2s), Some(StanzaError::new(StanzaErrorCondition::RemoteServerTimeout)));
    }

    #[test]
    fn stanza_error_round_trips() {
        for &condition in StanzaErrorCondition::ALL {
            let e = StanzaError::new(condition).with_text("why").with_by("example.com");
            assert_eq!(StanzaError::from_element(&e.to_element()), Some(e.clone()));
            let reparsed = parse(&String::from_utf8_lossy(&e.to_element().to_bytes()));
            assert_eq!(StanzaError::from_element(&reparsed), Some(e));
        }
        let e = StanzaError::new(StanzaErrorCondition::PolicyViolation).with_type(ErrorType::Wait);
        assert_eq!(StanzaError::from_element(&e.to_element()), Some(e));
    }

    #[test]
    fn stanza_error_from_element_is_lenient() {
        // RFC 6120 §8.3.3.10 (not-allowed); the type attribute is missing here.
        let e =
            parse("<error xmlns='jabber:client'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>");
        assert_eq!(StanzaError::from_element(&e).map(|e| e.error_type), Some(ErrorType::Cancel));
        let e = parse(
            "<error xmlns='jabber:client' type='later'><made-up xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        );
        assert_eq!(StanzaError::from_element(&e), Some(StanzaError::new(StanzaErrorCondition::UndefinedCondition)));
        // No defined condition at all, or not an error element: nothing to read.
        let e = parse(
            "<error xmlns='jabber:client' type='cancel'><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>x</text></error>",
        );
        assert_eq!(StanzaError::from_element(&e), None);
        let e = parse("<message xmlns='jabber:client'><body>hi</body></message>");
        assert_eq!(StanzaError::from_element(&e), None);
        let e = parse("<error xmlns='urn:example'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>");
        assert_eq!(StanzaError::from_element(&e), None);
    }

    #[test]
    fn display() {
        let e = StanzaError::new(StanzaErrorCondition::ItemNotFound).with_text("no such node");
        assert_eq!(e.to_string(), "stanza error <item-not-found/> (cancel): no such node");
        assert_eq!(StreamError::new(StreamErrorCondition::Reset).to_string(), "stream error <reset/>");
    }
}
