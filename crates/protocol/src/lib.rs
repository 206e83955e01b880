//! XMPP protocol types as pure data: JIDs (RFC 7622), namespaces, stream and stanza errors
//! (RFC 6120), stanza headers and the XEP payloads the server reads or writes.
//!
//! Nothing here touches a socket, an actor, a store or a clock: every type parses from and
//! serialises to XML (via `starling-xml`) and is tested with the examples of its specification.

// Defined before the modules that use it (textual scope).
/// Declares a fieldless enum whose variants map one-to-one to the names a specification gives
/// them (XML element or attribute values), with `as_str`, `parse`, `ALL` and `Display`, so the two
/// directions can never drift apart.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the specification's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name the specification gives this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value with this name, if the specification defines it.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod datetime;
pub mod error;
pub mod hosts;
pub mod jid;
pub mod ns;
pub mod payload;
pub mod stanza;

pub use hosts::Hosts;
pub use error::{ErrorType, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
pub use jid::{Jid, JidError};
pub use payload::PayloadError;
pub use stanza::{Stanza, StanzaBuildError, StanzaKind};
