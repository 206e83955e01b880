//! What an archive answers besides the messages: the `<fin/>` ending a query (XEP-0313 §4.3) and
//! the archive's metadata (§5).

use starling_xml::Element;

use crate::datetime;
use crate::ns;
use crate::payload::rsm::RsmSet;
use crate::payload::{PayloadError, bool_attr, expect};

/// The result of a query, after its messages (XEP-0313 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MamFin {
    /// The page reaches the end of what the query selects (§4.3.2).
    pub complete: bool,
    /// `false` when the results may still change (§4.3.2); written only then.
    pub stable: bool,
    /// The page: first and last ids, or a count.
    pub set: RsmSet,
}

impl TryFrom<&Element> for MamFin {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<MamFin, PayloadError> {
        expect(element, "fin", ns::MAM)?;
        let set =
            element.get_child("set", ns::RSM).ok_or(PayloadError::MissingChild { element: "fin", child: "set" })?;
        Ok(MamFin {
            complete: bool_attr(element, "complete", "MAM complete", false)?,
            stable: bool_attr(element, "stable", "MAM stable", true)?,
            set: RsmSet::try_from(set)?,
        })
    }
}

impl From<&MamFin> for Element {
    fn from(fin: &MamFin) -> Element {
        let mut element = Element::new("fin", ns::MAM).with_child((&fin.set).into());
        if fin.complete {
            element.set_attr("complete", "true");
        }
        if !fin.stable {
            element.set_attr("stable", "false");
        }
        element
    }
}

impl From<MamFin> for Element {
    fn from(fin: MamFin) -> Element {
        Element::from(&fin)
    }
}

/// The oldest or newest message of an archive (XEP-0313 §5): its id and XEP-0082 timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEnd {
    pub id: String,
    pub timestamp: String,
}

impl ArchiveEnd {
    /// An end whose timestamp is `micros` since the Unix epoch.
    pub fn at(id: impl Into<String>, micros: u64) -> ArchiveEnd {
        ArchiveEnd { id: id.into(), timestamp: datetime::format(micros) }
    }
}

/// Archive metadata (XEP-0313 §5): both ends, or neither for an empty archive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MamMetadata {
    pub start: Option<ArchiveEnd>,
    pub end: Option<ArchiveEnd>,
}

impl TryFrom<&Element> for MamMetadata {
    type Error = PayloadError;

    /// Refuses an end without `id` or `timestamp`, or with a timestamp that is not a DateTime.
    fn try_from(element: &Element) -> Result<MamMetadata, PayloadError> {
        expect(element, "metadata", ns::MAM)?;
        let end = |name: &'static str| -> Result<Option<ArchiveEnd>, PayloadError> {
            let Some(child) = element.get_child(name, ns::MAM) else { return Ok(None) };
            let attr =
                |attribute| child.attr(attribute).ok_or(PayloadError::MissingAttribute { element: name, attribute });
            let timestamp = attr("timestamp")?;
            if datetime::parse(timestamp).is_none() {
                return Err(PayloadError::invalid("MAM metadata timestamp", timestamp));
            }
            Ok(Some(ArchiveEnd { id: attr("id")?.to_owned(), timestamp: timestamp.to_owned() }))
        };
        Ok(MamMetadata { start: end("start")?, end: end("end")? })
    }
}

impl From<&MamMetadata> for Element {
    fn from(metadata: &MamMetadata) -> Element {
        let mut element = Element::new("metadata", ns::MAM);
        for (name, end) in [("start", &metadata.start), ("end", &metadata.end)] {
            if let Some(end) = end {
                element.push_child(
                    Element::new(name, ns::MAM)
                        .with_attr("id", end.id.as_str())
                        .with_attr("timestamp", end.timestamp.as_str()),
                );
            }
        }
        element
    }
}

impl From<MamMetadata> for Element {
    fn from(metadata: MamMetadata) -> Element {
        Element::from(&metadata)
    }
}
