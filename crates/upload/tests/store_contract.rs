//! The contract every upload store keeps, run on the filesystem store and on a real S3-compatible
//! server (`scripts/infra/s3 start`: `S3_ENDPOINT`, `S3_BUCKET`, `S3_ACCESS_KEY_ID`,
//! `S3_SECRET_ACCESS_KEY`). An unreachable S3 server fails the test: skipping would let a run
//! without it pass without testing that store at all.
//!
//! One test per store, its checks in sequence: the sweep check deletes everything old enough in
//! the store, which would race with other tests writing to it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use starling_upload::slot::{FileKey, Signer};
use starling_upload::store::{FileStore, PutError};
use starling_upload::S3Config;

/// Above the S3 multipart threshold (5 MiB), so that the multipart path runs on both stores.
const LARGE: usize = 11 << 20;
const PIECE: usize = 64 << 10;

fn pieces(data: &[u8]) -> impl futures_util::Stream<Item = Result<Bytes, String>> + Unpin + use<> {
    let chunks: Vec<Result<Bytes, String>> = data.chunks(PIECE).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
    stream::iter(chunks)
}

fn data(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn contents(store: &FileStore, key: &FileKey) -> Option<Vec<u8>> {
    let (size, body) = store.get(key).await.expect("get")?;
    let bytes: Vec<Bytes> = body.try_collect().await.expect("read");
    let whole = bytes.concat();
    assert_eq!(whole.len() as u64, size);
    Some(whole)
}

async fn contract(store: FileStore) {
    let signer = Signer::new(rand::random::<[u8; 32]>().to_vec());
    let user = format!("user{}@example.com", rand::random::<u32>());
    let owner = signer.owner(&user);

    // A small file and a large one (multipart) come back as they went in.
    let small = signer.new_file(&user, "note.txt");
    store.put(&small, 100, pieces(&data(100, 1))).await.expect("small put");
    assert_eq!(contents(&store, &small).await, Some(data(100, 1)));
    assert_eq!(store.size(&small).await.expect("size"), Some(100));
    let large = signer.new_file(&user, "video.mp4");
    store.put(&large, LARGE as u64, pieces(&data(LARGE, 2))).await.expect("large put");
    assert!(contents(&store, &large).await == Some(data(LARGE, 2)), "the large file differs");
    assert_eq!(store.usage(&owner).await.expect("usage"), 100 + LARGE as u64);
    assert_eq!(store.usage(&signer.owner("someone-else@example.com")).await.expect("usage"), 0);

    // A body longer or shorter than the slot, or one that fails, leaves nothing behind.
    for (size, length) in [(10, 11), (10, 9), (LARGE as u64, LARGE + 1), (LARGE as u64, LARGE - 1)] {
        let key = signer.new_file(&user, "wrong.bin");
        let outcome = store.put(&key, size, pieces(&data(length, 3))).await;
        match outcome {
            Err(PutError::TooLong) => assert!(length as u64 > size),
            Err(PutError::TooShort) => assert!((length as u64) < size),
            other => panic!("a body of {length} bytes for a slot of {size}: {other:?}"),
        }
        assert_eq!(store.size(&key).await.expect("size"), None, "a refused body of {length} bytes was stored");
    }
    let failing = signer.new_file(&user, "cut.bin");
    let cut = pieces(&data(PIECE * 100, 4)).take(90).chain(stream::iter([Err("connection reset".to_owned())]));
    assert!(matches!(store.put(&failing, (PIECE * 100) as u64, cut).await, Err(PutError::Body(_))));
    assert_eq!(store.size(&failing).await.expect("size"), None);
    assert_eq!(store.usage(&owner).await.expect("usage"), 100 + LARGE as u64, "refused uploads count against the quota");

    // Missing files are absent, not errors.
    let missing = signer.new_file(&user, "missing");
    assert!(store.get(&missing).await.expect("get").is_none());
    assert_eq!(store.size(&missing).await.expect("size"), None);

    // The sweep deletes what was stored before its cutoff, and nothing newer.
    assert_eq!(store.sweep(SystemTime::now() - Duration::from_secs(3600)).await.expect("sweep"), 0);
    assert_eq!(contents(&store, &small).await, Some(data(100, 1)));
    let deleted = store.sweep(SystemTime::now() + Duration::from_secs(2)).await.expect("sweep");
    assert!(deleted >= 2, "{deleted} deleted");
    assert_eq!(store.usage(&owner).await.expect("usage"), 0);
    assert!(store.get(&small).await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filesystem_store_keeps_the_contract() {
    let directory = tempfile::tempdir().expect("tempdir");
    contract(FileStore::filesystem(directory.path()).expect("open")).await;
    // Deleting a file removed the directories it left empty.
    let left: Vec<_> = walk(directory.path());
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_store_keeps_the_contract() {
    let setting = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let config = S3Config {
        endpoint: setting("S3_ENDPOINT", "http://127.0.0.1:27070"),
        bucket: setting("S3_BUCKET", "starling-test"),
        region: setting("S3_REGION", "us-east-1"),
        access_key_id: setting("S3_ACCESS_KEY_ID", "starling"),
        secret_access_key: setting("S3_SECRET_ACCESS_KEY", "starling-test-secret"),
    };
    let store = FileStore::s3(&config).expect("S3 store");
    if let Err(error) = store.usage("probe").await {
        panic!(
            "\n\n*** No S3-compatible server at {} ({error}).\n*** Start one with `scripts/infra/s3 start` (or set S3_ENDPOINT and the rest).\n*** This test fails rather than skips.\n\n",
            config.endpoint
        );
    }
    contract(store).await;
}

fn walk(directory: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(directory).expect("read_dir").flatten().flat_map(|entry| {
        let path = entry.path();
        let mut below = if path.is_dir() { walk(&path) } else { Vec::new() };
        below.push(path);
        below
    }).collect()
}
