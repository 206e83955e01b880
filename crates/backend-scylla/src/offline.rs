//! Offline queues. Per user, one partition: messages clustered by id, plus two static columns,
//! `last_id` (the last id handed out) and `floor` (every id up to it is removed). Ids are handed
//! out one at a time and removal always takes a prefix, so the queue is exactly the ids in
//! `(floor, last_id]` and its length is `last_id - floor`: the quota check needs no count.
//!
//! Both static columns change only by LWT (compare-and-set at LOCAL_SERIAL), so concurrent
//! pushes on any number of servers get distinct, strictly increasing ids and cannot overshoot the
//! quota: a push's append and its `last_id` bump are one conditional single-partition batch.
//! Rows at or below `floor` are deleted with a plain range delete after the floor moved; reads
//! ignore them anyway, so a delete that failed (or lost a timestamp race) is harmless.
//!
//! The queue is read at LOCAL_SERIAL too: a push whose server died in the middle of its LWT is
//! finished (or dropped) by that read, so the next owner, looking for a replayed message before
//! storing it again, sees what the dead one stored.

use async_trait::async_trait;
use starling_cluster::store::{OfflineMessages, StoreError};

use crate::{CAS_ATTEMPTS, ScyllaStore, applied, from_bigint, rows};

/// `(last_id, floor)`; `None` for a user that never had a message.
type State = Option<(i64, i64)>;

impl ScyllaStore {
    async fn offline_state(&self, user: &str, serial: bool) -> Result<State, StoreError> {
        let statement = if serial {
            &self.st.offline_state_serial
        } else {
            &self.st.offline_state
        };
        let result = self.exec(statement, (user,)).await?;
        Ok(rows::<(Option<i64>, Option<i64>)>(result, "offline")?
            .into_iter()
            .next()
            .and_then(|(last, floor)| last.map(|last| (last, floor.unwrap_or(0)))))
    }
}

#[async_trait]
impl OfflineMessages for ScyllaStore {
    async fn push(
        &self,
        user: &str,
        stanza: Vec<u8>,
        max_per_user: usize,
    ) -> Result<u64, StoreError> {
        let max = i64::try_from(max_per_user).unwrap_or(i64::MAX);
        for _ in 0..CAS_ATTEMPTS {
            let state = self.offline_state(user, true).await?;
            let (last, floor) = state.unwrap_or((0, 0));
            if last - floor >= max {
                return Err(StoreError::LimitExceeded);
            }
            let next = last
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt(format!("offline ids of {user} exhausted")))?;
            let result = match state {
                None => {
                    self.batch(
                        vec![
                            self.st.offline_seq_first.clone(),
                            self.st.offline_insert.clone(),
                        ],
                        ((next, user), (user, next, &stanza)),
                    )
                    .await?
                }
                Some(_) => {
                    self.batch(
                        vec![self.st.offline_seq.clone(), self.st.offline_insert.clone()],
                        ((next, user, last), (user, next, &stanza)),
                    )
                    .await?
                }
            };
            if applied(result)? {
                return Ok(from_bigint(next));
            }
        }
        Err(StoreError::Unavailable(format!(
            "offline queue of {user}: too much contention"
        )))
    }

    async fn fetch(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let result = self.exec(&self.st.offline_fetch, (user,)).await?;
        Ok(
            rows::<(Option<i64>, Option<i64>, Option<Vec<u8>>)>(result, "offline")?
                .into_iter()
                .filter_map(|(floor, id, stanza)| match id {
                    Some(id) if id > floor.unwrap_or(0) => {
                        Some((from_bigint(id), stanza.unwrap_or_default()))
                    }
                    _ => None,
                })
                .collect(),
        )
    }

    async fn remove_upto(&self, user: &str, id: u64) -> Result<(), StoreError> {
        let upto = i64::try_from(id).unwrap_or(i64::MAX);
        for _ in 0..CAS_ATTEMPTS {
            let Some((last, floor)) = self.offline_state(user, true).await? else {
                return Ok(());
            };
            let new_floor = floor.max(upto.min(last));
            if new_floor == floor {
                return Ok(());
            }
            if applied(
                self.exec(&self.st.offline_floor, (new_floor, user, floor))
                    .await?,
            )? {
                self.exec(&self.st.offline_delete_upto, (user, new_floor))
                    .await?;
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "offline queue of {user}: too much contention"
        )))
    }

    async fn count(&self, user: &str) -> Result<usize, StoreError> {
        let (last, floor) = self.offline_state(user, false).await?.unwrap_or((0, 0));
        usize::try_from(last - floor).map_err(|_| {
            StoreError::Corrupt(format!(
                "offline queue of {user}: floor {floor} above last id {last}"
            ))
        })
    }

    /// Empties the queue but keeps the two counters, so ids stay increasing even if the same JID
    /// registers again (a client acknowledging an old id can never remove a new message).
    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        self.remove_upto(user, u64::MAX).await
    }
}
