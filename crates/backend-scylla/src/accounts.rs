use async_trait::async_trait;
use starling_cluster::store::{Accounts, ScramCredentials, ScramKeys, StoreError};

use crate::{ScyllaStore, applied, corrupt, rows};

type CredentialRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

fn columns(c: ScramCredentials) -> CredentialRow {
    (
        i64::from(c.iterations),
        c.salt,
        c.sha1.stored_key,
        c.sha1.server_key,
        c.sha256.stored_key,
        c.sha256.server_key,
    )
}

// Every write to `accounts` is an LWT, so reads and writes of a row never mix Paxos and plain
// timestamps.
#[async_trait]
impl Accounts for ScyllaStore {
    async fn create(&self, user: &str, credentials: ScramCredentials) -> Result<(), StoreError> {
        let (i, salt, s1, k1, s256, k256) = columns(credentials);
        let result = self
            .exec(&self.st.account_insert, (user, i, salt, s1, k1, s256, k256))
            .await?;
        if applied(result)? {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn credentials(&self, user: &str) -> Result<Option<ScramCredentials>, StoreError> {
        let result = self.exec(&self.st.account_get, (user,)).await?;
        let Some((iterations, salt, s1, k1, s256, k256)) =
            rows::<CredentialRow>(result, "accounts")?
                .into_iter()
                .next()
        else {
            return Ok(None);
        };
        let iterations =
            u32::try_from(iterations).map_err(|error| corrupt("accounts.iterations", error))?;
        Ok(Some(ScramCredentials {
            iterations,
            salt,
            sha1: ScramKeys {
                stored_key: s1,
                server_key: k1,
            },
            sha256: ScramKeys {
                stored_key: s256,
                server_key: k256,
            },
        }))
    }

    async fn set_credentials(
        &self,
        user: &str,
        credentials: ScramCredentials,
    ) -> Result<bool, StoreError> {
        let (i, salt, s1, k1, s256, k256) = columns(credentials);
        applied(
            self.exec(&self.st.account_update, (i, salt, s1, k1, s256, k256, user))
                .await?,
        )
    }

    async fn remove(&self, user: &str) -> Result<bool, StoreError> {
        applied(self.exec(&self.st.account_delete, (user,)).await?)
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        // A full scan, paged by the driver: an admin call, as the trait says.
        use futures_util::TryStreamExt;
        let pager = self
            .session
            .execute_iter(self.st.account_list.clone(), ())
            .await
            .map_err(|error| StoreError::Unavailable(format!("listing accounts: {error}")))?;
        let mut users: Vec<String> = pager
            .rows_stream::<(String,)>()
            .map_err(|error| corrupt("accounts", error))?
            .map_ok(|(user,)| user)
            .try_collect()
            .await
            .map_err(|error| StoreError::Unavailable(format!("listing accounts: {error}")))?;
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }

    async fn exists(&self, user: &str) -> Result<bool, StoreError> {
        let result = self.exec(&self.st.account_exists, (user,)).await?;
        Ok(!rows::<(String,)>(result, "accounts")?.is_empty())
    }
}
