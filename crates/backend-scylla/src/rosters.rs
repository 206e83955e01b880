use async_trait::async_trait;
use starling_cluster::store::{RosterItem, Rosters, StoreError, Subscription};

use crate::{CAS_ATTEMPTS, ScyllaStore, applied, corrupt, from_bigint, rows};

type ItemRow = (
    String,
    Option<String>,
    Option<Vec<String>>,
    Option<i8>,
    Option<bool>,
    Option<bool>,
);

fn subscription_code(subscription: Subscription) -> i8 {
    match subscription {
        Subscription::None => 0,
        Subscription::To => 1,
        Subscription::From => 2,
        Subscription::Both => 3,
    }
}

fn item_from_row(
    (jid, name, groups, subscription, ask_out, approved): ItemRow,
) -> Result<RosterItem, StoreError> {
    let subscription = match subscription.unwrap_or(0) {
        0 => Subscription::None,
        1 => Subscription::To,
        2 => Subscription::From,
        3 => Subscription::Both,
        other => {
            return Err(corrupt(
                "roster_items.subscription",
                format!("unknown value {other} for {jid}"),
            ));
        }
    };
    Ok(RosterItem {
        jid,
        name,
        // CQL stores an empty list as null.
        groups: groups.unwrap_or_default(),
        subscription,
        ask_out: ask_out.unwrap_or(false),
        approved: approved.unwrap_or(false),
    })
}

impl ScyllaStore {
    /// Bumps the user's roster version from `current` (`None`: no roster yet) in one conditional
    /// single-partition batch with `change`, the item write. `Ok(None)` if another writer bumped
    /// it first (the caller reads again and retries).
    async fn bump_with(
        &self,
        user: &str,
        current: Option<i64>,
        change: Change<'_>,
    ) -> Result<Option<u64>, StoreError> {
        let next = current
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| corrupt("roster version", "overflow"))?;
        let result = match (current, change) {
            (None, Change::Put(row)) => {
                self.batch(
                    vec![
                        self.st.roster_bump_first.clone(),
                        self.st.roster_item_put.clone(),
                    ],
                    ((next, user), row),
                )
                .await?
            }
            (Some(old), Change::Put(row)) => {
                self.batch(
                    vec![self.st.roster_bump.clone(), self.st.roster_item_put.clone()],
                    ((next, user, old), row),
                )
                .await?
            }
            (None, Change::Delete(contact)) => {
                self.batch(
                    vec![
                        self.st.roster_bump_first.clone(),
                        self.st.roster_item_delete.clone(),
                    ],
                    ((next, user), (user, contact)),
                )
                .await?
            }
            (Some(old), Change::Delete(contact)) => {
                self.batch(
                    vec![
                        self.st.roster_bump.clone(),
                        self.st.roster_item_delete.clone(),
                    ],
                    ((next, user, old), (user, contact)),
                )
                .await?
            }
        };
        Ok(applied(result)?.then_some(from_bigint(next)))
    }
}

enum Change<'a> {
    Put(
        (
            &'a str,
            &'a str,
            Option<&'a str>,
            Vec<&'a str>,
            i8,
            bool,
            bool,
        ),
    ),
    Delete(&'a str),
}

// Every write of a user's roster partition is one conditional batch on the static `version`
// column (LWT, LOCAL_SERIAL): the version check is the compare-and-set, so versions strictly
// increase even with concurrent writers on different servers. Only `remove_user` deletes the
// whole partition without a condition.
#[async_trait]
impl Rosters for ScyllaStore {
    async fn roster(&self, user: &str) -> Result<(u64, Vec<RosterItem>), StoreError> {
        // One partition read: the static version comes with every row (and alone, with a null
        // contact, when the roster has a version but no items).
        let result = self.exec(&self.st.roster_all, (user,)).await?;
        type Row = (
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<Vec<String>>,
            Option<i8>,
            Option<bool>,
            Option<bool>,
        );
        let mut version = 0;
        let mut items = Vec::new();
        for (v, contact, name, groups, subscription, ask_out, approved) in
            rows::<Row>(result, "roster_items")?
        {
            version = v.map_or(0, from_bigint);
            if let Some(contact) = contact {
                items.push(item_from_row((
                    contact,
                    name,
                    groups,
                    subscription,
                    ask_out,
                    approved,
                ))?);
            }
        }
        Ok((version, items))
    }

    async fn item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>, StoreError> {
        let result = self.exec(&self.st.roster_item, (user, contact)).await?;
        rows::<ItemRow>(result, "roster_items")?
            .into_iter()
            .next()
            .map(item_from_row)
            .transpose()
    }

    async fn put(&self, user: &str, item: RosterItem) -> Result<u64, StoreError> {
        let groups: Vec<&str> = item.groups.iter().map(String::as_str).collect();
        for _ in 0..CAS_ATTEMPTS {
            let result = self.exec(&self.st.roster_version_serial, (user,)).await?;
            let current = rows::<(Option<i64>,)>(result, "roster_items")?
                .into_iter()
                .next()
                .and_then(|(v,)| v);
            let row = (
                user,
                item.jid.as_str(),
                item.name.as_deref(),
                groups.clone(),
                subscription_code(item.subscription),
                item.ask_out,
                item.approved,
            );
            if let Some(version) = self.bump_with(user, current, Change::Put(row)).await? {
                return Ok(version);
            }
        }
        Err(StoreError::Unavailable(format!(
            "roster of {user}: too much contention"
        )))
    }

    async fn remove(&self, user: &str, contact: &str) -> Result<Option<u64>, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            // With a clustering key given, a missing item yields no row at all.
            let result = self
                .exec(&self.st.roster_item_serial, (user, contact))
                .await?;
            let Some((current, _)) = rows::<(Option<i64>, String)>(result, "roster_items")?
                .into_iter()
                .next()
            else {
                return Ok(None);
            };
            if let Some(version) = self
                .bump_with(user, current, Change::Delete(contact))
                .await?
            {
                return Ok(Some(version));
            }
        }
        Err(StoreError::Unavailable(format!(
            "roster of {user}: too much contention"
        )))
    }

    async fn version(&self, user: &str) -> Result<u64, StoreError> {
        let result = self.exec(&self.st.roster_version, (user,)).await?;
        Ok(rows::<(Option<i64>,)>(result, "roster_items")?
            .into_iter()
            .next()
            .and_then(|(v,)| v)
            .map_or(0, from_bigint))
    }

    async fn add_pending_in(
        &self,
        user: &str,
        contact: &str,
        stanza: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.exec(&self.st.pending_put, (user, contact, stanza))
            .await?;
        Ok(())
    }

    async fn remove_pending_in(&self, user: &str, contact: &str) -> Result<bool, StoreError> {
        // Read, then delete (no LWT, so this table never mixes Paxos and plain writes). Two
        // concurrent removals may both report true; the request is gone either way.
        let result = self.exec(&self.st.pending_get, (user, contact)).await?;
        if rows::<(String,)>(result, "pending_in")?.is_empty() {
            return Ok(false);
        }
        self.exec(&self.st.pending_delete, (user, contact)).await?;
        Ok(true)
    }

    async fn pending_in(&self, user: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let result = self.exec(&self.st.pending_all, (user,)).await?;
        Ok(rows::<(String, Option<Vec<u8>>)>(result, "pending_in")?
            .into_iter()
            .map(|(contact, stanza)| (contact, stanza.unwrap_or_default()))
            .collect())
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.exec(&self.st.roster_delete_user, (user,)).await?;
        self.exec(&self.st.pending_delete_user, (user,)).await?;
        Ok(())
    }
}
