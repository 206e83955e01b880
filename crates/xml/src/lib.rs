//! XMPP's restricted XML (RFC 6120 §11) on `quick-xml`.
//!
//! Two jobs: [`StreamReader`] cuts a never-ending `<stream:stream>` document into top-level elements
//! (stanzas and stream-level elements) as self-contained byte strings, enforcing the limits that keep
//! a hostile peer's cost bounded; [`Element`] is a minimal tree for the handlers that need to look
//! inside a payload. This crate knows XML and XMPP's framing rules, nothing of sockets' origin (it reads
//! any `AsyncRead`), JIDs, stanza semantics or error conditions' wire names.

mod element;
mod escape;
mod limits;
mod names;
mod stream;

pub use element::{Element, Node, ParseError};
pub use escape::{escape_attr, escape_text};
pub use limits::Limits;
pub use stream::{FrameError, RawElement, StreamHeader, StreamReader, StreamEvent};

/// Namespace of the stream wrapper element (`<stream:stream>`, `<stream:features>`, `<stream:error>`).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
