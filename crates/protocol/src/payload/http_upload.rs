//! HTTP File Upload (XEP-0363): a client asks the upload service for a slot for one file; the
//! answer says where to PUT it and where it can then be fetched. Pure data: the service decides
//! the URLs.

use starling_xml::Element;

use super::{PayloadError, expect};
use crate::ns;

/// `<request filename='…' size='…' content-type='…'/>` (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    pub filename: String,
    pub size: u64,
    pub content_type: Option<String>,
}

/// `<slot><put url='…'/><get url='…'/></slot>` (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSlot {
    pub put: String,
    pub get: String,
}

impl TryFrom<&Element> for UploadRequest {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<UploadRequest, PayloadError> {
        expect(element, "request", ns::HTTP_UPLOAD)?;
        let filename = element.attr("filename").filter(|name| !name.trim().is_empty());
        let filename = filename.ok_or(PayloadError::MissingAttribute { element: "request", attribute: "filename" })?;
        let size = element.attr("size").ok_or(PayloadError::MissingAttribute { element: "request", attribute: "size" })?;
        let size = size.trim().parse().map_err(|_| PayloadError::invalid("size", size))?;
        let content_type = element.attr("content-type").filter(|value| !value.is_empty()).map(str::to_owned);
        Ok(UploadRequest { filename: filename.to_owned(), size, content_type })
    }
}

impl From<&UploadSlot> for Element {
    fn from(slot: &UploadSlot) -> Element {
        Element::new("slot", ns::HTTP_UPLOAD)
            .with_child(Element::new("put", ns::HTTP_UPLOAD).with_attr("url", slot.put.as_str()))
            .with_child(Element::new("get", ns::HTTP_UPLOAD).with_attr("url", slot.get.as_str()))
    }
}

/// The application condition of a `not-acceptable` error for a file above the limit (§5).
pub fn file_too_large(max_file_size: u64) -> Element {
    Element::new("file-too-large", ns::HTTP_UPLOAD).with_child(Element::new("max-file-size", ns::HTTP_UPLOAD).with_text(max_file_size.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_and_a_slot_writes() {
        let element = Element::parse(b"<request xmlns='urn:xmpp:http:upload:0' filename='a.jpg' size='23456' content-type='image/jpeg'/>").expect("parses");
        assert_eq!(
            UploadRequest::try_from(&element),
            Ok(UploadRequest { filename: "a.jpg".into(), size: 23456, content_type: Some("image/jpeg".into()) })
        );
        let slot = UploadSlot { put: "https://x/p?a=1&b=2".into(), get: "https://x/g".into() };
        assert_eq!(
            Element::from(&slot).to_bytes(),
            b"<slot xmlns='urn:xmpp:http:upload:0'><put url='https://x/p?a=1&amp;b=2'/><get url='https://x/g'/></slot>"
        );
    }

    #[test]
    fn a_request_without_a_name_or_a_size_is_refused() {
        for request in ["<request xmlns='urn:xmpp:http:upload:0' size='1'/>", "<request xmlns='urn:xmpp:http:upload:0' filename=' ' size='1'/>", "<request xmlns='urn:xmpp:http:upload:0' filename='a'/>", "<request xmlns='urn:xmpp:http:upload:0' filename='a' size='-1'/>"] {
            let element = Element::parse(request.as_bytes()).expect("parses");
            assert!(UploadRequest::try_from(&element).is_err(), "{request}");
        }
    }
}
