//! Where uploaded files are kept: an [`ObjectStore`] (the `object_store` crate) — the local
//! filesystem for one node, an S3-compatible bucket for a cluster — used the same way, so one
//! contract suite covers both. Nothing besides the files is stored: a user's usage is the sum of
//! what is under their owner prefix, and expiry is the files' age.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayloadMut, RetryConfig, WriteMultipart};

use crate::config::{S3Config, StoreKind, UploadConfig};
use crate::slot::FileKey;

/// S3 multipart parts must be at least 5 MiB (but the last); a smaller file is sent in one PUT.
const S3_CHUNK: usize = 5 << 20;
/// Files are written to disk in chunks of this size (one in memory, one being written).
const FILESYSTEM_CHUNK: usize = 1 << 20;

pub type StoreError = object_store::Error;

/// Why a file was not stored. Nothing is left behind in any case.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the body is longer than the slot's size")]
    TooLong,
    #[error("the body ended before the slot's size")]
    TooShort,
    #[error("the request body failed: {0}")]
    Body(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

pub struct FileStore {
    objects: Arc<dyn ObjectStore>,
    chunk: usize,
    /// The filesystem store's directory: an abandoned upload's directories are removed there
    /// (the store cleans up after deletes, not after aborts).
    directory: Option<PathBuf>,
}

impl FileStore {
    /// The store `config` names; the filesystem store defaults to `uploads` in `data_dir`.
    pub fn open(config: &UploadConfig, data_dir: &FsPath) -> Result<FileStore, StoreError> {
        match config.store {
            StoreKind::Filesystem if config.path.is_empty() => FileStore::filesystem(&data_dir.join("uploads")),
            StoreKind::Filesystem => FileStore::filesystem(FsPath::new(&config.path)),
            StoreKind::S3 => FileStore::s3(&config.s3),
        }
    }

    /// Files under `directory` (created if missing); directories a deleted file leaves empty
    /// are removed.
    pub fn filesystem(directory: &FsPath) -> Result<FileStore, StoreError> {
        std::fs::create_dir_all(directory).map_err(|source| StoreError::Generic { store: "filesystem", source: Box::new(source) })?;
        let objects = LocalFileSystem::new_with_prefix(directory)?.with_automatic_cleanup(true);
        Ok(FileStore { objects: Arc::new(objects), chunk: FILESYSTEM_CHUNK, directory: Some(directory.to_owned()) })
    }

    /// Files in an S3 bucket (path-style requests, so any S3-compatible server works).
    pub fn s3(config: &S3Config) -> Result<FileStore, StoreError> {
        // Retries stop after 10 s (the default retries for up to 3 minutes): a client waits on a
        // failing store for no longer than it would wait for an answer, then hears "try again".
        let retry = RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(10), ..RetryConfig::default() };
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket).with_region(&config.region).with_retry(retry);
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(&config.endpoint).with_allow_http(config.endpoint.starts_with("http://"));
        }
        if !config.access_key_id.is_empty() {
            builder = builder.with_access_key_id(&config.access_key_id).with_secret_access_key(&config.secret_access_key);
        }
        Ok(FileStore { objects: Arc::new(builder.build()?), chunk: S3_CHUNK, directory: None })
    }

    /// Stores `body` as `key`, which must be exactly `size` bytes: a longer body is cut off at
    /// `size` and refused, a shorter one refused at its end. At most two chunks are held in
    /// memory, whatever the size.
    pub async fn put<S>(&self, key: &FileKey, size: u64, body: S) -> Result<(), PutError>
    where
        S: Stream<Item = Result<Bytes, String>> + Unpin,
    {
        let path = path(key);
        if size <= self.chunk as u64 {
            let whole = read_at_most(body, size).await?;
            self.objects.put(&path, whole.freeze()).await?;
            return Ok(());
        }
        let mut upload = WriteMultipart::new_with_chunk_size(self.objects.put_multipart(&path).await?, self.chunk);
        match write_parts(&mut upload, body, size).await {
            Ok(()) => {
                upload.finish().await?;
                Ok(())
            }
            Err(error) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(%abort, %path, "abandoned upload not cleaned up");
                }
                if let Some(directory) = &self.directory {
                    // Each fails, harmlessly, if something else is in the directory.
                    let file_directory = directory.join(&key.owner).join(&key.id);
                    let _ = std::fs::remove_dir(&file_directory).and_then(|()| std::fs::remove_dir(directory.join(&key.owner)));
                }
                Err(error)
            }
        }
    }

    /// The file's size and contents, or `None` when there is no such file.
    pub async fn get(&self, key: &FileKey) -> Result<Option<(u64, BoxStream<'static, Result<Bytes, StoreError>>)>, StoreError> {
        match self.objects.get(&path(key)).await {
            Ok(found) => Ok(Some((found.meta.size, found.into_stream()))),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The file's size, or `None` when there is no such file.
    pub async fn size(&self, key: &FileKey) -> Result<Option<u64>, StoreError> {
        match self.objects.head(&path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// What `owner`'s files add up to.
    pub async fn usage(&self, owner: &str) -> Result<u64, StoreError> {
        self.objects.list(Some(&Path::from(owner))).try_fold(0, |total, meta| async move { Ok(total + meta.size) }).await
    }

    /// Deletes the files stored before `cutoff`; returns how many.
    pub async fn sweep(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        let cutoff = cutoff.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64);
        let expired = self.objects.list(None).try_filter(move |meta| std::future::ready(meta.last_modified.timestamp() < cutoff)).map_ok(|meta| meta.location).boxed();
        self.objects.delete_stream(expired).try_fold(0, |deleted, _| async move { Ok(deleted + 1) }).await
    }
}

fn path(key: &FileKey) -> Path {
    Path::from_iter([key.owner.as_str(), key.id.as_str(), key.name.as_str()])
}

/// The whole of a body that must be exactly `size` bytes (small: at most one chunk).
async fn read_at_most<S>(mut body: S, size: u64) -> Result<PutPayloadMut, PutError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut whole = PutPayloadMut::new();
    while let Some(data) = body.next().await {
        let data = data.map_err(PutError::Body)?;
        if whole.content_length() as u64 + data.len() as u64 > size {
            return Err(PutError::TooLong);
        }
        whole.push(data);
    }
    if (whole.content_length() as u64) < size { Err(PutError::TooShort) } else { Ok(whole) }
}

async fn write_parts<S>(upload: &mut WriteMultipart, mut body: S, size: u64) -> Result<(), PutError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut written = 0u64;
    while let Some(data) = body.next().await {
        let data = data.map_err(PutError::Body)?;
        written += data.len() as u64;
        if written > size {
            return Err(PutError::TooLong);
        }
        // One part in flight while the next fills: the body is read no faster than it is stored.
        upload.wait_for_capacity(1).await?;
        upload.put(data);
    }
    if written < size { Err(PutError::TooShort) } else { Ok(()) }
}
