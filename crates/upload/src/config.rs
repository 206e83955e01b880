//! `[upload]`: XEP-0363 HTTP file upload.

use std::time::Duration;

use serde::Deserialize;

/// `[upload]`. Off by default; when on, files go through the `[websocket]` HTTP listeners (the
/// edge's HTTP server), so one of those must be configured too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    pub enabled: bool,
    /// The service's JID; empty: `upload.` and the server's domain.
    pub domain: String,
    /// Where clients reach the HTTP listener, e.g. `https://upload.example.com` (a proxy in front
    /// forwards `/upload/…` unchanged). Empty: `https://DOMAIN:PORT` of the first `[websocket]
    /// tls_listen`, or `http://…` of the first `listen`.
    pub public_url: String,
    /// The largest file a slot is given for.
    pub max_file_bytes: u64,
    /// What one user's stored files may add up to (0: no quota).
    pub quota_bytes: u64,
    /// How long a file is kept (and its GET URL valid) after its slot was issued.
    pub retention_seconds: u64,
    /// How long a PUT URL is valid.
    pub slot_lifetime_seconds: u64,
    /// Content types a slot is given for, exactly (`image/png`) or by family (`image/*`); empty:
    /// any.
    pub allowed_content_types: Vec<String>,
    /// The key slots are signed with; empty: `upload.key` in the data directory, made on first
    /// start. Every node of a cluster needs the same key, or a URL works only where it was issued.
    pub key_file: String,
    /// How often expired files are deleted (0: never, e.g. when the bucket's lifecycle rules do
    /// it).
    pub sweep_interval_seconds: u64,
    /// Uploads this node receives at once; more get 503 and a `Retry-After`. Each holds up to
    /// two chunks in memory (1 MiB on the filesystem, 5 MiB on S3, the smallest multipart part).
    pub max_parallel_uploads: usize,
    /// `filesystem` (the default: `path`, one node) or `s3` (`[upload.s3]`, any number of nodes).
    pub store: StoreKind,
    /// The filesystem store's directory; empty: `uploads` in the data directory.
    pub path: String,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Filesystem,
    S3,
}

/// `[upload.s3]`: an S3-compatible bucket. Credentials left empty come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …), e.g. a Kubernetes Secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000`; empty: AWS's own for `region`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: false,
            domain: String::new(),
            public_url: String::new(),
            max_file_bytes: 100 << 20,
            quota_bytes: 1 << 30,
            retention_seconds: 30 * 86_400,
            slot_lifetime_seconds: 300,
            allowed_content_types: Vec::new(),
            key_file: String::new(),
            sweep_interval_seconds: 3_600,
            max_parallel_uploads: 64,
            store: StoreKind::Filesystem,
            path: String::new(),
            s3: S3Config::default(),
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
        }
    }
}

impl UploadConfig {
    /// The service's domain for a server serving `domain`.
    pub fn domain_for(&self, domain: &str) -> String {
        if self.domain.is_empty() { format!("upload.{domain}") } else { self.domain.clone() }
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_seconds)
    }

    /// Whether a slot may be given for `content_type` (its essence, lower case).
    pub fn allows(&self, content_type: &str) -> bool {
        self.allowed_content_types.is_empty()
            || self.allowed_content_types.iter().any(|allowed| match allowed.strip_suffix("/*") {
                Some(family) => content_type.split('/').next().is_some_and(|own| own.eq_ignore_ascii_case(family)),
                None => allowed.eq_ignore_ascii_case(content_type),
            })
    }
}
