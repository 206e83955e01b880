//! XML namespaces the server reads or writes, named by what they are rather than by their URI so a
//! typo becomes a compile error instead of a silently unmatched element.

/// Client-to-server stanzas (RFC 6120 §4.8.3).
pub const CLIENT: &str = "jabber:client";
/// Server-to-server stanzas (RFC 6120 §4.8.3).
pub const SERVER: &str = "jabber:server";
/// The `<stream:stream/>` wrapper and `<stream:features/>` (RFC 6120 §4.8.1).
pub const STREAMS: &str = "http://etherx.jabber.org/streams";
/// XMPP over WebSocket: `<open/>` and `<close/>`, which stand for the stream's start and end
/// (RFC 7395 §3.3).
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// Stream error conditions and their `<text/>` (RFC 6120 §4.9.3).
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions and their `<text/>` (RFC 6120 §8.3.3).
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// STARTTLS negotiation (RFC 6120 §5).
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL negotiation (RFC 6120 §6).
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Extensible SASL Profile, SASL2 (XEP-0388).
pub const SASL2: &str = "urn:xmpp:sasl:2";
/// Bind 2 (XEP-0386): resource binding inline in SASL2.
pub const BIND2: &str = "urn:xmpp:bind:0";
/// Fast Authentication Streamlining Tokens (XEP-0484).
pub const FAST: &str = "urn:xmpp:fast:0";
/// SASL Channel-Binding Type Capability (XEP-0440).
pub const SASL_CHANNEL_BINDING: &str = "urn:xmpp:sasl-cb:0";
/// Resource binding (RFC 6120 §7).
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment, advertised as optional (RFC 3921 §3; draft-cridland-xmpp-session).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Roster management (RFC 6121 §2).
pub const ROSTER: &str = "jabber:iq:roster";
/// Roster versioning stream feature (RFC 6121 §2.6).
pub const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
/// Subscription pre-approval stream feature (RFC 6121 §3.4).
pub const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
/// XMPP Ping (XEP-0199).
pub const PING: &str = "urn:xmpp:ping";
/// Service Discovery, info requests (XEP-0030).
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// Service Discovery, items requests (XEP-0030).
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// Entity Capabilities (XEP-0115).
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// vCard-temp (XEP-0054).
pub const VCARD: &str = "vcard-temp";
/// Private XML Storage (XEP-0049).
pub const PRIVATE: &str = "jabber:iq:private";
/// Blocking Command (XEP-0191).
pub const BLOCKING: &str = "urn:xmpp:blocking";
/// Blocking Command application errors, e.g. `<blocked/>` (XEP-0191 §3.5).
pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// Message Carbons (XEP-0280).
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// Stanza Forwarding (XEP-0297).
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// Software Version (XEP-0092).
pub const VERSION: &str = "jabber:iq:version";
/// Entity Time (XEP-0202).
pub const TIME: &str = "urn:xmpp:time";
/// Last Activity (XEP-0012).
pub const LAST: &str = "jabber:iq:last";
/// In-Band Registration (XEP-0077).
pub const REGISTER: &str = "jabber:iq:register";
/// In-Band Registration stream feature (XEP-0077 §4).
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
/// Delayed Delivery (XEP-0203).
pub const DELAY: &str = "urn:xmpp:delay";
/// Data Forms (XEP-0004).
pub const DATA_FORMS: &str = "jabber:x:data";
/// Data Forms Validation (XEP-0122), e.g. the `<validate/>` of MAM's `ids` field.
pub const DATA_FORMS_VALIDATE: &str = "http://jabber.org/protocol/xdata-validate";
/// Message Processing Hints (XEP-0334).
pub const HINTS: &str = "urn:xmpp:hints";
/// Stream Management (XEP-0198).
pub const SM: &str = "urn:xmpp:sm:3";
/// Jabber Component Protocol (XEP-0114): the content namespace of a component's stream.
pub const COMPONENT_ACCEPT: &str = "jabber:component:accept";
/// Chat State Notifications (XEP-0085).
pub const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
/// Client State Indication (XEP-0352).
pub const CSI: &str = "urn:xmpp:csi:0";
/// Message Archive Management (XEP-0313).
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0313's extended queries (before-id/after-id/ids, flipped pages, metadata), a disco feature.
pub const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// Result Set Management (XEP-0059).
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// Unique and Stable Stanza IDs (XEP-0359).
pub const STANZA_ID: &str = "urn:xmpp:sid:0";
/// Multi-User Chat (XEP-0045).
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// XEP-0045 occupant information.
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0045 room owner use cases (configuration, destruction).
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0045 room admin use cases (roles, affiliations).
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// Push Notifications (XEP-0357).
pub const PUSH: &str = "urn:xmpp:push:0";
/// The summary form of a push notification (XEP-0357 §7).
pub const PUSH_SUMMARY: &str = "urn:xmpp:push:summary";
/// Publish-Subscribe (XEP-0060).
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 owner use cases (configure, delete, purge).
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060 notifications.
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 application-specific error conditions.
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0060 §7.1.5 publish-options form.
pub const PUBSUB_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// XEP-0060 node configuration form.
pub const PUBSUB_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// XEP-0060 §8.6: the form an owner answers to approve a subscription.
pub const PUBSUB_SUBSCRIBE_AUTHORIZATION: &str = "http://jabber.org/protocol/pubsub#subscribe_authorization";
/// XEP-0060 §5.4: a node's metadata form.
pub const PUBSUB_META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
/// Ad-Hoc Commands (XEP-0050).
pub const ADHOC: &str = "http://jabber.org/protocol/commands";
/// External Service Discovery (XEP-0215): STUN/TURN servers and their credentials.
pub const EXTDISCO: &str = "urn:xmpp:extdisco:2";
/// HTTP File Upload (XEP-0363).
pub const HTTP_UPLOAD: &str = "urn:xmpp:http:upload:0";
/// Spam and abuse reporting (XEP-0377), inside blocking commands.
pub const REPORTING: &str = "urn:xmpp:reporting:1";

/// XEP-0347 Internet of Things — Discovery.
pub const IOT_DISCOVERY: &str = "urn:xmpp:iot:discovery";
