//! XEP-0363 HTTP file upload at `upload.DOMAIN`. A client asks for a slot (an IQ the edge hands
//! to [`Upload::answer`]); the slot's PUT and GET URLs point at the edge's HTTP listeners, which
//! hand `/upload/…` to [`Upload::serve`]. The URLs carry their terms under an HMAC (`slot`), the
//! files live in a [`FileStore`] (the filesystem, or S3 for a cluster), and nothing else is kept:
//! any node with the key and the store can issue and serve any slot.

mod config;
mod http;
pub mod slot;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use starling_protocol::payload::http_upload::file_too_large;
use starling_protocol::payload::{DataForm, DiscoInfoResult, Field, FormType, Identity, UploadRequest, UploadSlot};
use starling_protocol::{ns, ErrorType, Jid, JidError, Stanza, StanzaError, StanzaErrorCondition};
use starling_xml::Element;
use tokio::sync::Semaphore;

pub use config::{S3Config, StoreKind, UploadConfig};
pub use http::{plain_response, Body};
use slot::{Access, Grant, Signer};
pub use store::FileStore;

/// How long a slot request waits for the store to sum the user's files.
const USAGE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Upload {
    config: UploadConfig,
    jid: Jid,
    /// The URL the HTTP listeners are reached at, without a trailing `/`.
    base_url: String,
    signer: Signer,
    store: FileStore,
    /// Uploads being received by this node (`max_parallel_uploads`).
    receiving: Arc<Semaphore>,
}

impl Upload {
    /// The service for `domain`, reached at `base_url`, signing with `key`.
    pub fn new(config: UploadConfig, domain: &Jid, base_url: &str, key: Vec<u8>, store: FileStore) -> Result<Upload, JidError> {
        Ok(Upload {
            jid: Jid::new(&config.domain_for(domain.as_str()))?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            signer: Signer::new(key),
            store,
            receiving: Arc::new(Semaphore::new(config.max_parallel_uploads)),
            config,
        })
    }

    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// The answer to an IQ request addressed to the service: disco#info, or a slot request.
    pub async fn answer(&self, request: &Stanza) -> Stanza {
        let outcome = match request.element() {
            Ok(iq) => self.outcome(&iq, &request.from).await,
            Err(_) => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
        };
        match outcome {
            Ok(payload) => request.iq_result(&self.jid, payload),
            Err(error) => request.error_reply(&self.jid, &error).unwrap_or_else(|| request.iq_result(&self.jid, None)),
        }
    }

    async fn outcome(&self, iq: &Element, from: &Jid) -> Result<Option<Element>, StanzaError> {
        let is_get = iq.attr("type") == Some("get");
        match iq.children().next() {
            Some(query) if is_get && query.is("query", ns::DISCO_INFO) => Ok(Some(Element::from(&self.disco_info()))),
            Some(query) if is_get && query.is("query", ns::DISCO_ITEMS) => Ok(Some(Element::new("query", ns::DISCO_ITEMS))),
            Some(request) if is_get && request.is("request", ns::HTTP_UPLOAD) => self.slot(request, from).await.map(Some),
            Some(_) => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
            None => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
        }
    }

    /// §3: the service, and its size limit in an extension form.
    fn disco_info(&self) -> DiscoInfoResult {
        let form = DataForm::new(
            FormType::Result,
            vec![Field::hidden("FORM_TYPE", ns::HTTP_UPLOAD), Field::text_single("max-file-size").with_value(self.config.max_file_bytes.to_string())],
        );
        DiscoInfoResult {
            node: None,
            identities: vec![Identity::new("store", "file", Some("HTTP File Upload"))],
            features: vec![ns::DISCO_INFO.into(), ns::HTTP_UPLOAD.into()],
            extensions: vec![form],
        }
    }

    /// §4: a slot for the file `request` describes, or the error that says why not (§5).
    async fn slot(&self, request: &Element, from: &Jid) -> Result<Element, StanzaError> {
        let request = UploadRequest::try_from(request).map_err(|error| StanzaError::new(error.condition()).with_text(error.to_string()))?;
        let max = self.config.max_file_bytes;
        if request.size > max {
            return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)
                .with_text(format!("the file is larger than the largest allowed, {max} bytes"))
                .with_app(file_too_large(max)));
        }
        let content_type = match &request.content_type {
            Some(value) => Some(slot::content_type_essence(value).ok_or_else(|| StanzaError::new(StanzaErrorCondition::BadRequest).with_text("not a content type"))?),
            None => None,
        };
        if let Some(content_type) = content_type.as_deref().filter(|content_type| !self.config.allows(content_type)) {
            return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable).with_text(format!("files of type {content_type} are not accepted")));
        }
        let user = from.bare();
        let key = self.signer.new_file(user.as_str(), &request.filename);
        if self.config.quota_bytes > 0 {
            // The client's stream waits for this answer: a store that hangs must not hold it.
            let used = match tokio::time::timeout(USAGE_TIMEOUT, self.store.usage(&key.owner)).await {
                Ok(Ok(used)) => used,
                Ok(Err(error)) => return Err(store_unavailable(&error)),
                Err(_) => return Err(store_unavailable(&"no answer within 5 s")),
            };
            if used.saturating_add(request.size) > self.config.quota_bytes {
                return Err(StanzaError::new(StanzaErrorCondition::ResourceConstraint)
                    .with_text(format!("your stored files would exceed your quota of {} bytes", self.config.quota_bytes)));
            }
        }
        let now = unix_now();
        let put = Grant { size: Some(request.size), content_type: content_type.clone(), expires: now + self.config.slot_lifetime_seconds };
        let get = Grant { size: None, content_type, expires: now + self.config.retention_seconds };
        let slot = UploadSlot { put: self.signer.url(&self.base_url, &key, Access::Put, &put), get: self.signer.url(&self.base_url, &key, Access::Get, &get) };
        tracing::debug!(%user, file = %key.name, size = request.size, "upload slot issued");
        Ok(Element::from(&slot))
    }

    /// Deletes expired files every `sweep_interval_seconds`, for as long as the process runs.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        if self.config.sweep_interval_seconds == 0 {
            return;
        }
        let upload = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(upload.config.sweep_interval_seconds));
            loop {
                ticks.tick().await;
                let cutoff = SystemTime::now() - upload.config.retention();
                match upload.store.sweep(cutoff).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "upload store: expired files deleted"),
                    Err(error) => tracing::warn!(%error, "upload store: sweep failed"),
                }
            }
        });
    }
}

/// A slot cannot be checked against the quota: the store failed or did not answer in time.
fn store_unavailable(why: &dyn std::fmt::Display) -> StanzaError {
    tracing::warn!(%why, "upload store: usage not read");
    StanzaError::new(StanzaErrorCondition::InternalServerError).with_type(ErrorType::Wait).with_text("file storage is unavailable: try again shortly")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}
