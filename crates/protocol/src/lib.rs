//! XMPP protocol types as pure data: JIDs (RFC 7622), namespaces, stream and stanza errors
//! (RFC 6120), stanza headers and the XEP payloads the server reads or writes.
//!
//! Nothing here touches a socket, an actor, a store or a clock: every type parses from and
//! serialises to XML (via `starling-xml`) and is tested with the examples of its specification.

pub mod datetime;
pub mod error;
pub mod jid;
pub mod ns;
pub mod payload;
pub mod stanza;

pub use error::{ErrorType, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
pub use jid::{Jid, JidError};
pub use payload::PayloadError;
pub use stanza::{Stanza, StanzaBuildError, StanzaKind};
