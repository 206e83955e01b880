//! `/upload/{owner}/{id}/{name}` on the edge's HTTP listeners: PUT stores a file on the terms
//! its slot signed (size, type, expiry), GET and HEAD serve it until it expires, OPTIONS answers
//! browsers' CORS preflight. Bodies stream both ways: no file is ever held whole in memory.
//!
//! Files are served so that a browser never runs them: `X-Content-Type-Options: nosniff`, a CSP
//! that allows nothing and sandboxes, and `Content-Disposition: attachment` for anything but
//! images, audio and video (SVG included in "anything": it can hold script).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::slot::{self, Access, FileKey, Grant, Refusal};
use crate::store::PutError;
use crate::{unix_now, Upload};

/// What the edge's HTTP listeners answer with.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// How long a PUT may send nothing before it is dropped (slow senders hold a connection and an
/// upload permit).
const BODY_IDLE: Duration = Duration::from_secs(30);
const PREFIX: &str = "/upload/";
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

impl Upload {
    /// Whether `path` is one [`Upload::serve`] answers.
    pub fn serves(path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    /// The answer to an HTTP request for `/upload/…`.
    pub async fn serve<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let path = request.uri().path().strip_prefix(PREFIX).unwrap_or_default().to_owned();
        let method = request.method().clone();
        let mut response = match method {
            Method::PUT => self.put(request, &path).await,
            Method::GET | Method::HEAD => self.get(request.uri().query(), &path, method == Method::HEAD).await,
            Method::OPTIONS => preflight(),
            _ => {
                let mut response = plain_response(StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD or PUT");
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"));
                response
            }
        };
        // Web clients upload and fetch from their own origin (XEP-0363 §6).
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        response
    }

    async fn put<B>(&self, request: Request<B>, path: &str) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display,
    {
        let (key, grant) = match self.signer.verify(path, request.uri().query(), Access::Put, unix_now()) {
            Ok(verified) => verified,
            Err(Refusal::Expired) => return plain_response(StatusCode::FORBIDDEN, "this upload slot has expired: ask for a new one"),
            Err(refusal) => return refused(refusal),
        };
        let size = grant.size.unwrap_or_default();
        let headers = request.headers();
        match headers.get(header::CONTENT_LENGTH).map(|length| length.to_str().ok().and_then(|length| length.parse::<u64>().ok())) {
            Some(Some(length)) if length > size => return plain_response(StatusCode::PAYLOAD_TOO_LARGE, "Content-Length is larger than the slot's size"),
            Some(Some(length)) if length < size => return plain_response(StatusCode::BAD_REQUEST, "Content-Length is smaller than the slot's size"),
            Some(None) => return plain_response(StatusCode::BAD_REQUEST, "Content-Length is not a number"),
            _ => {}
        }
        let sent_type = headers.get(header::CONTENT_TYPE).map(|value| value.to_str().ok().and_then(slot::content_type_essence));
        if let (Some(slot_type), Some(sent_type)) = (&grant.content_type, sent_type)
            && sent_type.as_ref() != Some(slot_type)
        {
            return plain_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type differs from the slot's");
        }
        let Ok(_permit) = self.receiving.clone().try_acquire_owned() else {
            let mut response = plain_response(StatusCode::SERVICE_UNAVAILABLE, "too many uploads at once: try again shortly");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        };
        if let Some(refusal) = self.before_storing(&key, size).await {
            return refusal;
        }
        let body = Box::pin(stream::unfold(request.into_body(), next_data));
        match self.store.put(&key, size, body).await {
            Ok(()) => {
                tracing::debug!(owner = %key.owner, file = %key.name, size, "file uploaded");
                plain_response(StatusCode::CREATED, "stored")
            }
            Err(PutError::TooLong) => plain_response(StatusCode::PAYLOAD_TOO_LARGE, "the body is longer than the slot's size"),
            Err(PutError::TooShort) => plain_response(StatusCode::BAD_REQUEST, "the body ended before the slot's size"),
            Err(PutError::Body(why)) => {
                tracing::debug!(%why, file = %key.name, "upload body failed");
                plain_response(StatusCode::BAD_REQUEST, "the request body failed")
            }
            Err(PutError::Store(error)) => store_failed(&error),
        }
    }

    /// A slot is used once, and the owner's quota is checked again (other slots may have been
    /// used since this one was issued).
    async fn before_storing(&self, key: &FileKey, size: u64) -> Option<Response<Body>> {
        match self.store.size(key).await {
            Ok(Some(_)) => return Some(plain_response(StatusCode::CONFLICT, "this slot has been used")),
            Ok(None) => {}
            Err(error) => return Some(store_failed(&error)),
        }
        let quota = self.config.quota_bytes;
        if quota == 0 {
            return None;
        }
        match self.store.usage(&key.owner).await {
            Ok(used) if used.saturating_add(size) > quota => Some(plain_response(StatusCode::PAYLOAD_TOO_LARGE, "the uploader's quota is used up")),
            Ok(_) => None,
            Err(error) => Some(store_failed(&error)),
        }
    }

    async fn get(&self, query: Option<&str>, path: &str, head: bool) -> Response<Body> {
        let (key, grant) = match self.signer.verify(path, query, Access::Get, unix_now()) {
            Ok(verified) => verified,
            Err(Refusal::Expired) => return plain_response(StatusCode::GONE, "this file has expired"),
            Err(refusal) => return refused(refusal),
        };
        let (size, body) = if head {
            match self.store.size(&key).await {
                Ok(Some(size)) => (size, Empty::new().map_err(|never| match never {}).boxed_unsync()),
                Ok(None) => return plain_response(StatusCode::NOT_FOUND, "no such file"),
                Err(error) => return store_failed(&error),
            }
        } else {
            match self.store.get(&key).await {
                Ok(Some((size, contents))) => (size, StreamBody::new(contents.map_ok(Frame::data).map_err(std::io::Error::other)).boxed_unsync()),
                Ok(None) => return plain_response(StatusCode::NOT_FOUND, "no such file"),
                Err(error) => return store_failed(&error),
            }
        };
        let mut response = Response::new(body);
        safe_headers(&mut response, &key, &grant, size);
        response
    }
}

/// The headers a stored file is served with.
fn safe_headers(response: &mut Response<Body>, key: &FileKey, grant: &Grant, size: u64) {
    let content_type = grant.content_type.as_deref().unwrap_or("application/octet-stream");
    let shown = content_type.split('/').next().is_some_and(|kind| matches!(kind, "image" | "audio" | "video")) && content_type != "image/svg+xml";
    let disposition = format!("{}; filename*=UTF-8''{}", if shown { "inline" } else { "attachment" }, utf8_percent_encode(&key.name, NON_ALPHANUMERIC));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// The next data frame of a request body (trailers skipped), or why the body failed.
async fn next_data<B>(mut body: B) -> Option<(Result<Bytes, String>, B)>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    loop {
        match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Err(_) => return Some((Err(format!("nothing received for {} s", BODY_IDLE.as_secs())), body)),
            Ok(None) => return None,
            Ok(Some(Err(error))) => return Some((Err(error.to_string()), body)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Some((Ok(data), body));
                }
            }
        }
    }
}

fn preflight() -> Response<Body> {
    let mut response = plain_response(StatusCode::NO_CONTENT, "");
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::Malformed => plain_response(StatusCode::NOT_FOUND, "no such upload URL"),
        Refusal::BadSignature => plain_response(StatusCode::FORBIDDEN, "the URL's signature does not match"),
        Refusal::Expired => plain_response(StatusCode::FORBIDDEN, "the URL has expired"),
    }
}

fn store_failed(error: &crate::store::StoreError) -> Response<Body> {
    tracing::warn!(%error, "upload store failed");
    let mut response = plain_response(StatusCode::SERVICE_UNAVAILABLE, "file storage is unavailable: try again shortly");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    response
}

/// A short `text/plain` answer.
pub fn plain_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
