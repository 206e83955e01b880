//! The small per-user stores: vCards, private XML, block lists, last activity and push
//! registrations; multi-user chat rooms; XEP-0377 abuse reports; XEP-0347 Things.

use async_trait::async_trait;
use redb::ReadableTable;
use starling_cluster::store::{
    AbuseReport, AbuseReports, Blocklists, FastToken, FastTokenSlots, FastTokens, LastActivity, LastSeen, PrivateXml, PushRegistration, PushRegistrations, Rooms, StoreError, Things, VCards,
    service_of,
};

use crate::{ABUSE_REPORTS, BLOCKLISTS, EmbeddedStore, FAST_TOKENS, LAST_ACTIVITY, LISTED_ROOMS, PRIVATE_XML, PUSH, ROOMS, THINGS, VCARDS, successor};

#[async_trait]
impl VCards for EmbeddedStore {
    async fn get(&self, user: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| Ok(txn.open_table(VCARDS)?.get(user.as_str())?.map(|vcard| vcard.value().to_vec()))).await
    }

    async fn set(&self, user: &str, vcard: Vec<u8>) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(VCARDS)?.insert(user.as_str(), vcard.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn remove(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(VCARDS)?.remove(user.as_str())?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Rooms for EmbeddedStore {
    async fn get(&self, room: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let room = room.to_owned();
        self.read(move |txn| Ok(txn.open_table(ROOMS)?.get(room.as_str())?.map(|record| record.value().to_vec()))).await
    }

    async fn set(&self, room: &str, record: Vec<u8>, listed: Option<&str>) -> Result<(), StoreError> {
        let (room, listed) = (room.to_owned(), listed.map(str::to_owned));
        self.write(move |txn| {
            txn.open_table(ROOMS)?.insert(room.as_str(), record.as_slice())?;
            let mut listing = txn.open_table(LISTED_ROOMS)?;
            let key = (service_of(&room), room.as_str());
            match listed {
                Some(name) => listing.insert(key, name.as_str())?,
                None => listing.remove(key)?,
            };
            Ok(())
        })
        .await
    }

    async fn remove(&self, room: &str) -> Result<(), StoreError> {
        let room = room.to_owned();
        self.write(move |txn| {
            txn.open_table(ROOMS)?.remove(room.as_str())?;
            txn.open_table(LISTED_ROOMS)?.remove((service_of(&room), room.as_str()))?;
            Ok(())
        })
        .await
    }

    async fn listed(&self, service: &str) -> Result<Vec<(String, String)>, StoreError> {
        let service = service.to_owned();
        self.read(move |txn| {
            let listing = txn.open_table(LISTED_ROOMS)?;
            let mut rooms = Vec::new();
            for entry in listing.range((service.as_str(), "")..)? {
                let (key, name) = entry?;
                let (entry_service, room) = key.value();
                if entry_service != service {
                    break;
                }
                rooms.push((room.to_owned(), name.value().to_owned()));
            }
            Ok(rooms)
        })
        .await
    }
}

#[async_trait]
impl Things for EmbeddedStore {
    async fn list(&self, registry: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let registry = registry.to_owned();
        self.read(move |txn| {
            let things = txn.open_table(THINGS)?;
            let mut listed = Vec::new();
            for entry in things.range((registry.as_str(), "")..)? {
                let (key, record) = entry?;
                let (entry_registry, thing) = key.value();
                if entry_registry != registry {
                    break;
                }
                listed.push((thing.to_owned(), record.value().to_vec()));
            }
            Ok(listed)
        })
        .await
    }

    async fn set(&self, registry: &str, thing: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let (registry, thing) = (registry.to_owned(), thing.to_owned());
        self.write(move |txn| {
            txn.open_table(THINGS)?.insert((registry.as_str(), thing.as_str()), record.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn remove(&self, registry: &str, thing: &str) -> Result<(), StoreError> {
        let (registry, thing) = (registry.to_owned(), thing.to_owned());
        self.write(move |txn| {
            txn.open_table(THINGS)?.remove((registry.as_str(), thing.as_str()))?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl PrivateXml for EmbeddedStore {
    async fn get(&self, user: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (user, key) = (user.to_owned(), key.to_owned());
        self.read(move |txn| {
            Ok(txn.open_table(PRIVATE_XML)?.get((user.as_str(), key.as_str()))?.map(|xml| xml.value().to_vec()))
        })
        .await
    }

    async fn set(&self, user: &str, key: &str, xml: Vec<u8>) -> Result<(), StoreError> {
        let (user, key) = (user.to_owned(), key.to_owned());
        self.write(move |txn| {
            txn.open_table(PRIVATE_XML)?.insert((user.as_str(), key.as_str()), xml.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            let end = successor(&user);
            txn.open_table(PRIVATE_XML)?.retain_in((user.as_str(), "")..(end.as_str(), ""), |_, _| false)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Blocklists for EmbeddedStore {
    async fn list(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let blocked = txn.open_table(BLOCKLISTS)?;
            let end = successor(&user);
            blocked
                .range((user.as_str(), "")..(end.as_str(), ""))?
                .map(|entry| Ok(entry?.0.value().1.to_owned()))
                .collect()
        })
        .await
    }

    async fn add(&self, user: &str, jids: &[String]) -> Result<(), StoreError> {
        let (user, jids) = (user.to_owned(), jids.to_vec());
        self.write(move |txn| {
            let mut blocked = txn.open_table(BLOCKLISTS)?;
            for jid in &jids {
                blocked.insert((user.as_str(), jid.as_str()), ())?;
            }
            Ok(())
        })
        .await
    }

    async fn remove(&self, user: &str, jids: &[String]) -> Result<(), StoreError> {
        let (user, jids) = (user.to_owned(), jids.to_vec());
        self.write(move |txn| {
            let mut blocked = txn.open_table(BLOCKLISTS)?;
            for jid in &jids {
                blocked.remove((user.as_str(), jid.as_str()))?;
            }
            Ok(())
        })
        .await
    }

    async fn clear(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            let end = successor(&user);
            txn.open_table(BLOCKLISTS)?.retain_in((user.as_str(), "")..(end.as_str(), ""), |_, _| false)?;
            Ok(())
        })
        .await
    }

    async fn is_blocked(&self, user: &str, jid: &str) -> Result<bool, StoreError> {
        let (user, jid) = (user.to_owned(), jid.to_owned());
        self.read(move |txn| Ok(txn.open_table(BLOCKLISTS)?.get((user.as_str(), jid.as_str()))?.is_some())).await
    }
}

#[async_trait]
impl LastActivity for EmbeddedStore {
    async fn set(&self, user: &str, seen: LastSeen) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(LAST_ACTIVITY)?.insert(user.as_str(), (seen.unix_seconds, seen.status.as_str()))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, user: &str) -> Result<Option<LastSeen>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            Ok(txn.open_table(LAST_ACTIVITY)?.get(user.as_str())?.map(|stored| {
                let (unix_seconds, status) = stored.value();
                LastSeen { unix_seconds, status: status.to_owned() }
            }))
        })
        .await
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(LAST_ACTIVITY)?.remove(user.as_str())?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl PushRegistrations for EmbeddedStore {
    async fn list(&self, user: &str) -> Result<Vec<PushRegistration>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let end = successor(&user);
            txn.open_table(PUSH)?
                .range((user.as_str(), "", "")..(end.as_str(), "", ""))?
                .map(|entry| {
                    let (key, options) = entry?;
                    let (_, service, node) = key.value();
                    Ok(PushRegistration { service: service.to_owned(), node: node.to_owned(), options: options.value().to_vec() })
                })
                .collect()
        })
        .await
    }

    async fn add(&self, user: &str, registration: PushRegistration) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(PUSH)?.insert((user.as_str(), registration.service.as_str(), registration.node.as_str()), registration.options.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn remove(&self, user: &str, service: &str, node: Option<&str>) -> Result<(), StoreError> {
        let (user, service, node) = (user.to_owned(), service.to_owned(), node.map(str::to_owned));
        self.write(move |txn| {
            let mut table = txn.open_table(PUSH)?;
            match &node {
                Some(node) => {
                    table.remove((user.as_str(), service.as_str(), node.as_str()))?;
                }
                None => {
                    let end = successor(&service);
                    table.retain_in((user.as_str(), service.as_str(), "")..(user.as_str(), end.as_str(), ""), |_, _| false)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            let end = successor(&user);
            txn.open_table(PUSH)?.retain_in((user.as_str(), "", "")..(end.as_str(), "", ""), |_, _| false)?;
            Ok(())
        })
        .await
    }
}

// Expired slots stay until the client's next login replaces them (or the user is removed): a
// client's entry is two small values, and an expired token is refused anyway.
#[async_trait]
impl FastTokens for EmbeddedStore {
    async fn get(&self, user: &str, client: &str) -> Result<FastTokenSlots, StoreError> {
        let (user, client) = (user.to_owned(), client.to_owned());
        self.read(move |txn| {
            let Some(slots) = txn.open_table(FAST_TOKENS)?.get((user.as_str(), client.as_str()))? else { return Ok(FastTokenSlots::default()) };
            let (current, new) = slots.value();
            Ok(FastTokenSlots { current: FastToken::from_bytes(current), new: FastToken::from_bytes(new) })
        })
        .await
    }

    async fn put(&self, user: &str, client: &str, slots: &FastTokenSlots) -> Result<(), StoreError> {
        let (user, client) = (user.to_owned(), client.to_owned());
        let bytes = |token: &Option<FastToken>| token.as_ref().map(FastToken::to_bytes).unwrap_or_default();
        let (current, new, empty) = (bytes(&slots.current), bytes(&slots.new), slots.is_empty());
        self.write(move |txn| {
            let mut table = txn.open_table(FAST_TOKENS)?;
            if empty {
                table.remove((user.as_str(), client.as_str()))?;
            } else {
                table.insert((user.as_str(), client.as_str()), (current.as_slice(), new.as_slice()))?;
            }
            Ok(())
        })
        .await
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            let end = successor(&user);
            txn.open_table(FAST_TOKENS)?.retain_in((user.as_str(), "")..(end.as_str(), ""), |_, _| false)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl AbuseReports for EmbeddedStore {
    async fn add(&self, report: &AbuseReport) -> Result<(), StoreError> {
        let (at, reporter, reported, value) = (report.at_ms, report.reporter.clone(), report.reported.clone(), crate::codec::encode_abuse_report(report));
        self.write(move |txn| {
            txn.open_table(ABUSE_REPORTS)?.insert((at, reporter.as_str(), reported.as_str()), value.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AbuseReport>, StoreError> {
        self.read(move |txn| {
            let mut reports = Vec::new();
            for entry in txn.open_table(ABUSE_REPORTS)?.iter()?.rev().take(limit) {
                let (key, value) = entry?;
                let (at, reporter, reported) = key.value();
                // A value this version cannot read is skipped rather than failing the listing.
                reports.extend(crate::codec::decode_abuse_report(at, reporter, reported, value.value()));
            }
            Ok(reports)
        })
        .await
    }
}
