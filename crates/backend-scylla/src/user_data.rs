//! vCards, private XML, block lists, last activity, push registrations and FAST tokens: plain
//! per-user rows, last write wins.

use async_trait::async_trait;
use scylla::statement::batch::{Batch, BatchType};
use starling_cluster::store::{
    AbuseReport, AbuseReports, Blocklists, FastToken, FastTokenSlots, FastTokens, LastActivity, LastSeen, PrivateXml, PushRegistration, PushRegistrations, Rooms, StoreError, Things, VCards,
    service_of,
};

use crate::{ScyllaStore, execution_error, from_bigint, rows, to_bigint};

#[async_trait]
impl VCards for ScyllaStore {
    async fn get(&self, user: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let result = self.exec(&self.st.vcard_get, (user,)).await?;
        // An empty blob is a value (not null) in CQL, so an empty vCard stays distinct from none.
        Ok(rows::<(Option<Vec<u8>>,)>(result, "vcards")?
            .into_iter()
            .next()
            .map(|(vcard,)| vcard.unwrap_or_default()))
    }

    async fn set(&self, user: &str, vcard: Vec<u8>) -> Result<(), StoreError> {
        self.exec(&self.st.vcard_set, (user, vcard)).await?;
        Ok(())
    }

    async fn remove(&self, user: &str) -> Result<(), StoreError> {
        self.exec(&self.st.vcard_delete, (user,)).await?;
        Ok(())
    }
}

#[async_trait]
impl Rooms for ScyllaStore {
    async fn get(&self, room: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let result = self.exec(&self.st.room_get, (room,)).await?;
        Ok(rows::<(Option<Vec<u8>>,)>(result, "muc_rooms")?.into_iter().next().map(|(record,)| record.unwrap_or_default()))
    }

    /// The record first: a listing never names a room that has none.
    async fn set(&self, room: &str, record: Vec<u8>, listed: Option<&str>) -> Result<(), StoreError> {
        self.exec(&self.st.room_set, (room, record)).await?;
        match listed {
            Some(name) => self.exec(&self.st.room_list, (service_of(room), room, name)).await?,
            None => self.exec(&self.st.room_unlist, (service_of(room), room)).await?,
        };
        Ok(())
    }

    async fn remove(&self, room: &str) -> Result<(), StoreError> {
        self.exec(&self.st.room_unlist, (service_of(room), room)).await?;
        self.exec(&self.st.room_delete, (room,)).await?;
        Ok(())
    }

    async fn listed(&self, service: &str) -> Result<Vec<(String, String)>, StoreError> {
        let result = self.exec(&self.st.rooms_listed, (service,)).await?;
        Ok(rows::<(String, Option<String>)>(result, "muc_listed_rooms")?.into_iter().map(|(room, name)| (room, name.unwrap_or_default())).collect())
    }
}

#[async_trait]
impl Things for ScyllaStore {
    async fn list(&self, registry: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let result = self.exec(&self.st.things_all, (registry,)).await?;
        Ok(rows::<(String, Option<Vec<u8>>)>(result, "iot_things")?.into_iter().map(|(thing, record)| (thing, record.unwrap_or_default())).collect())
    }

    async fn set(&self, registry: &str, thing: &str, record: Vec<u8>) -> Result<(), StoreError> {
        self.exec(&self.st.thing_set, (registry, thing, record)).await?;
        Ok(())
    }

    async fn remove(&self, registry: &str, thing: &str) -> Result<(), StoreError> {
        self.exec(&self.st.thing_delete, (registry, thing)).await?;
        Ok(())
    }
}

#[async_trait]
impl PrivateXml for ScyllaStore {
    async fn get(&self, user: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let result = self.exec(&self.st.private_get, (user, key)).await?;
        Ok(rows::<(Option<Vec<u8>>,)>(result, "private_xml")?
            .into_iter()
            .next()
            .map(|(xml,)| xml.unwrap_or_default()))
    }

    async fn set(&self, user: &str, key: &str, xml: Vec<u8>) -> Result<(), StoreError> {
        self.exec(&self.st.private_set, (user, key, xml)).await?;
        Ok(())
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.exec(&self.st.private_delete_user, (user,)).await?;
        Ok(())
    }
}

impl ScyllaStore {
    /// One statement per JID, all in one partition: an unlogged batch is applied atomically there.
    async fn per_jid(
        &self,
        statement: &scylla::statement::prepared::PreparedStatement,
        user: &str,
        jids: &[String],
    ) -> Result<(), StoreError> {
        if jids.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in jids {
            batch.append_statement(statement.clone());
        }
        batch.set_consistency(self.consistency);
        let values: Vec<(&str, &str)> = jids.iter().map(|jid| (user, jid.as_str())).collect();
        self.session
            .batch(&batch, values)
            .await
            .map_err(execution_error)?;
        Ok(())
    }
}

#[async_trait]
impl Blocklists for ScyllaStore {
    async fn list(&self, user: &str) -> Result<Vec<String>, StoreError> {
        // Clustered by the JID, so already sorted and unique.
        let result = self.exec(&self.st.block_list, (user,)).await?;
        Ok(rows::<(String,)>(result, "blocklist")?
            .into_iter()
            .map(|(jid,)| jid)
            .collect())
    }

    async fn add(&self, user: &str, jids: &[String]) -> Result<(), StoreError> {
        self.per_jid(&self.st.block_add, user, jids).await
    }

    async fn remove(&self, user: &str, jids: &[String]) -> Result<(), StoreError> {
        self.per_jid(&self.st.block_remove, user, jids).await
    }

    async fn clear(&self, user: &str) -> Result<(), StoreError> {
        self.exec(&self.st.block_clear, (user,)).await?;
        Ok(())
    }

    async fn is_blocked(&self, user: &str, jid: &str) -> Result<bool, StoreError> {
        let result = self.exec(&self.st.block_get, (user, jid)).await?;
        Ok(!rows::<(String,)>(result, "blocklist")?.is_empty())
    }
}

#[async_trait]
impl LastActivity for ScyllaStore {
    async fn set(&self, user: &str, seen: LastSeen) -> Result<(), StoreError> {
        self.exec(
            &self.st.last_set,
            (user, to_bigint(seen.unix_seconds), seen.status),
        )
        .await?;
        Ok(())
    }

    async fn get(&self, user: &str) -> Result<Option<LastSeen>, StoreError> {
        let result = self.exec(&self.st.last_get, (user,)).await?;
        Ok(
            rows::<(Option<i64>, Option<String>)>(result, "last_activity")?
                .into_iter()
                .next()
                .map(|(seen, status)| LastSeen {
                    unix_seconds: seen.map_or(0, from_bigint),
                    status: status.unwrap_or_default(),
                }),
        )
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.exec(&self.st.last_delete, (user,)).await?;
        Ok(())
    }
}

#[async_trait]
impl PushRegistrations for ScyllaStore {
    async fn list(&self, user: &str) -> Result<Vec<PushRegistration>, StoreError> {
        let result = self.exec(&self.st.push_list, (user,)).await?;
        Ok(rows::<(String, String, Option<Vec<u8>>)>(result, "push_registrations")?
            .into_iter()
            .map(|(service, node, options)| PushRegistration { service, node, options: options.unwrap_or_default() })
            .collect())
    }

    async fn add(&self, user: &str, registration: PushRegistration) -> Result<(), StoreError> {
        self.exec(&self.st.push_add, (user, registration.service, registration.node, registration.options)).await?;
        Ok(())
    }

    async fn remove(&self, user: &str, service: &str, node: Option<&str>) -> Result<(), StoreError> {
        match node {
            Some(node) => self.exec(&self.st.push_remove, (user, service, node)).await?,
            None => self.exec(&self.st.push_remove_service, (user, service)).await?,
        };
        Ok(())
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.exec(&self.st.push_delete_user, (user,)).await?;
        Ok(())
    }
}

#[async_trait]
impl FastTokens for ScyllaStore {
    async fn get(&self, user: &str, client: &str) -> Result<FastTokenSlots, StoreError> {
        let result = self.exec(&self.st.fast_get, (user, client)).await?;
        let row = rows::<(Option<Vec<u8>>, Option<Vec<u8>>)>(result, "fast_tokens")?.into_iter().next();
        let token = |bytes: Option<Vec<u8>>| bytes.and_then(|bytes| FastToken::from_bytes(&bytes));
        Ok(row.map(|(current, new)| FastTokenSlots { current: token(current), new: token(new) }).unwrap_or_default())
    }

    async fn put(&self, user: &str, client: &str, slots: &FastTokenSlots) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let ttl = slots.expires().saturating_sub(now);
        if slots.is_empty() || ttl == 0 {
            self.exec(&self.st.fast_delete, (user, client)).await?;
            return Ok(());
        }
        let bytes = |token: &Option<FastToken>| token.as_ref().map(FastToken::to_bytes);
        // CQL TTLs are at most 20 years, and Cassandra refuses expirations past 2038-01-19
        // (CASSANDRA-14092): a longer-lived row is kept until then, and rewritten at next use.
        let until_2038 = (i32::MAX as u64).saturating_sub(now).saturating_sub(86_400);
        let ttl = i32::try_from(ttl.min(630_720_000).min(until_2038).max(1)).unwrap_or(1);
        self.exec(&self.st.fast_put, (user, client, bytes(&slots.current), bytes(&slots.new), ttl)).await?;
        Ok(())
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.exec(&self.st.fast_delete_user, (user,)).await?;
        Ok(())
    }
}

/// How many days back `recent` looks.
const REPORT_DAYS: i32 = 90;
const DAY_MS: u64 = 86_400_000;

type ReportRow = (i64, String, String, String, Option<String>, Option<Vec<String>>);

#[async_trait]
impl AbuseReports for ScyllaStore {
    async fn add(&self, report: &AbuseReport) -> Result<(), StoreError> {
        let day = i32::try_from(report.at_ms / DAY_MS).unwrap_or(i32::MAX);
        let at = i64::try_from(report.at_ms).unwrap_or(i64::MAX);
        let values = (day, at, &report.reporter, &report.reported, &report.reason, &report.text, &report.stanza_ids);
        self.exec(&self.st.reports_add, values).await?;
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<AbuseReport>, StoreError> {
        let today = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64) / DAY_MS;
        let today = i32::try_from(today).unwrap_or(i32::MAX);
        let mut reports = Vec::new();
        for day in (today - REPORT_DAYS..=today).rev() {
            if reports.len() >= limit {
                break;
            }
            let wanted = i32::try_from(limit - reports.len()).unwrap_or(i32::MAX);
            let result = self.exec(&self.st.reports_of_day, (day, wanted)).await?;
            reports.extend(rows::<ReportRow>(result, "abuse_reports")?.into_iter().map(|(at, reporter, reported, reason, text, ids)| AbuseReport {
                at_ms: u64::try_from(at).unwrap_or_default(),
                reporter,
                reported,
                reason,
                text,
                stanza_ids: ids.unwrap_or_default(),
            }));
        }
        Ok(reports)
    }
}
