//! An IQ request as the module registry hands it to a handler: the stanza, its payload and whom it
//! was addressed to.

use starling_protocol::{Jid, Stanza};
use starling_xml::Element;

/// Whom an IQ request is addressed to, as a handler registers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IqTo {
    /// The server's domain, from one of the user's resources.
    Server,
    /// The user's own bare JID (or no `to`), from one of its resources.
    OwnAccount,
    /// The user's bare JID, from anyone else.
    Account,
    /// A full JID of the user, from anyone: a handler here answers instead of that resource.
    Resource,
}

/// An IQ request (`get` or `set`) for a handler: the stanza and its single payload element.
pub(crate) struct Iq {
    pub stanza: Stanza,
    pub payload: Element,
    pub to: IqTo,
    /// Who answers: the domain, the user's bare JID, or the addressed full JID.
    pub responder: Jid,
    /// The user's resource that sent it ([`IqTo::Server`] and [`IqTo::OwnAccount`]).
    pub resource: Option<Jid>,
}

impl Iq {
    pub fn is_get(&self) -> bool {
        self.stanza.type_is("get")
    }
}
