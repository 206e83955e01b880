//! A room in a cluster. Who is in it outlives the node that owns it: every occupant who joins,
//! changes or leaves is written to the registry (Redis, beside users' routes, fenced by the
//! generation of the room's owner), and the actor that starts on the node taking the room's
//! partition over reads them back. Each restored occupant whose resource is no longer bound (its
//! client went away meanwhile) leaves as if it had sent unavailable presence. Clients notice
//! nothing: the room answers from the new node with the same occupants, roles and presences.
//!
//! And the room reaches its occupants without their owners: an occupant whose connection does
//! not use stream management (its route says which edge connection it is) gets what the room
//! sends straight from the room's node, in **one bus record per edge** for a groupchat message
//! however many occupants that edge holds (`FanOut`, written by the edge to each connection).
//! A stream-managed occupant goes through its owner, which keeps what the client has not
//! acknowledged (and the edge sends a fan-out to a connection that turned stream management on
//! later to its owner too). Everything the room sends an occupant goes the same way, so it
//! arrives in the room's order. What this skips on the owner: the user's block list (a user who
//! blocks a room leaves it, XEP-0191 §3.3) and holding presence for an inactive client (CSI).
//!
//! The registry record is an element of our own namespace: the occupant's real JID and role,
//! with its last presence inside. Its affiliation is the room's (stored with the room); its
//! route is read again.

use starling_protocol::payload::muc::Role;
use starling_protocol::Jid;
use starling_xml::Element;

use super::{Allowance, Occupant, Room};
use crate::fan_out::Via;
use crate::service::ServiceContext;

const RECORD: &str = "urn:starling:muc:occupant:0";

impl Room {
    /// Tells the registry of the occupants who changed while the last stanza was handled.
    pub(super) async fn publish_occupants(&mut self, context: &ServiceContext) {
        let mut touched = std::mem::take(&mut self.touched);
        let Some(cluster) = context.services.cluster.get() else { return };
        touched.sort_unstable();
        touched.dedup();
        for nick in touched {
            match self.state.as_ref().and_then(|room| room.occupants.iter().find(|o| o.nick == nick)) {
                Some(occupant) => cluster.record_occupant(&self.jid, &nick, &encode(occupant)).await,
                None => cluster.withdraw_occupant(&self.jid, &nick).await,
            }
        }
    }

    /// Brings back the occupants an earlier owner of the room recorded.
    pub(super) async fn restore_occupants(&mut self, context: &ServiceContext) {
        let Some(cluster) = context.services.cluster.get() else { return };
        let Some(records) = cluster.occupants(&self.jid).await else { return };
        if records.is_empty() {
            return;
        }
        let Some(room) = self.state.as_mut() else {
            // Occupants of a room that was never stored (still locked): gone with its node.
            for (nick, _) in records {
                cluster.withdraw_occupant(&self.jid, &nick).await;
            }
            return;
        };
        let mut gone = Vec::new();
        for (nick, record) in records {
            let Some((jid, role, presence)) = decode(&record) else {
                tracing::warn!(room = %self.jid, nick, "an occupant's record does not decode; it is dropped");
                self.touched.push(nick);
                continue;
            };
            let route = crate::fan_out::route_of(cluster.as_ref(), &jid).await;
            if route == Some(None) {
                gone.push(nick.clone());
            }
            let via = route.flatten().filter(|route| route.stream_management.is_none()).map(|route| Via { edge: route.node, connection: route.connection });
            let affiliation = room.affiliation(&jid.bare());
            room.occupants.push(Occupant { nick, jid, affiliation, role, presence, allowance: Allowance::new(self.service.occupant_burst), via });
        }
        tracing::info!(room = %self.jid, occupants = room.occupants.len(), gone = gone.len(), "restored the room's occupants");
        for nick in gone {
            let index = self.state.as_ref().and_then(|room| room.occupants.iter().position(|o| o.nick == nick));
            if let Some(index) = index {
                self.leave(context, index);
            }
        }
    }
}

impl Room {
    /// In a cluster, the edge connection of `occupant` (a full JID) if the room may write to it
    /// directly.
    pub(super) async fn direct_route(&self, context: &ServiceContext, occupant: &Jid) -> Option<Via> {
        crate::fan_out::direct_route(context.services.cluster.get()?.as_ref(), occupant).await
    }

    /// Sends `stanza` (an element without addresses) from `from` to each of `occupants`: one bus
    /// record per edge for those the room reaches directly, through their owners for the others.
    pub(super) fn send<'a>(&self, context: &ServiceContext, from: &Jid, stanza: Element, occupants: impl IntoIterator<Item = &'a Occupant>) {
        context.fan_out(from, stanza, occupants.into_iter().map(|occupant| (&occupant.jid, occupant.via.as_ref())));
    }
}

fn encode(occupant: &Occupant) -> Vec<u8> {
    Element::new("occupant", RECORD)
        .with_attr("jid", occupant.jid.as_str())
        .with_attr("role", occupant.role.as_str())
        .with_child(occupant.presence.clone())
        .to_bytes()
}

fn decode(record: &[u8]) -> Option<(Jid, Role, Element)> {
    let element = Element::parse(record).ok().filter(|element| element.is("occupant", RECORD))?;
    let jid = Jid::new(element.attr("jid")?).ok().filter(|jid| !jid.is_bare())?;
    let role = Role::parse(element.attr("role")?)?;
    let presence = element.into_children().next()?;
    Some((jid, role, presence))
}

#[cfg(test)]
mod tests {
    use starling_protocol::payload::muc::Affiliation;

    use super::*;

    #[test]
    fn an_occupant_record_reads_back_as_it_was_written() {
        let presence = Element::parse(b"<presence xmlns='jabber:client'><show>away</show><status>brewing</status></presence>").expect("xml");
        let occupant = Occupant {
            nick: "crone".into(),
            jid: Jid::new("crone@example.com/cauldron").expect("jid"),
            affiliation: Affiliation::Member,
            role: Role::Visitor,
            presence: presence.clone(),
            allowance: Allowance::new(1),
            via: None,
        };
        assert_eq!(decode(&encode(&occupant)), Some((occupant.jid.clone(), Role::Visitor, presence)));
        assert_eq!(decode(b"<occupant xmlns='urn:starling:muc:occupant:0' jid='bare@example.com' role='visitor'><presence/></occupant>"), None, "a real JID is full");
        assert_eq!(decode(b"<other/>"), None);
    }
}
