//! Software Version (XEP-0092): the `<query xmlns='jabber:iq:version'/>` result naming the
//! software an entity runs. The request is the same element, empty.

use starling_xml::Element;

use super::{PayloadError, child_text, expect, text_element};
use crate::ns;

/// A software version result (XEP-0092 §2): name and version are required, the OS optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareVersion {
    pub name: String,
    pub version: String,
    pub os: Option<String>,
}

impl TryFrom<&Element> for SoftwareVersion {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<SoftwareVersion, PayloadError> {
        expect(element, "query", ns::VERSION)?;
        let required = |child| {
            child_text(element, child, ns::VERSION).ok_or(PayloadError::MissingChild { element: "query", child })
        };
        Ok(SoftwareVersion {
            name: required("name")?,
            version: required("version")?,
            os: child_text(element, "os", ns::VERSION),
        })
    }
}

impl From<&SoftwareVersion> for Element {
    fn from(version: &SoftwareVersion) -> Element {
        let element = Element::new("query", ns::VERSION)
            .with_child(text_element("name", ns::VERSION, &version.name))
            .with_child(text_element("version", ns::VERSION, &version.version));
        match &version.os {
            Some(os) => element.with_child(text_element("os", ns::VERSION, os)),
            None => element,
        }
    }
}

impl From<SoftwareVersion> for Element {
    fn from(version: SoftwareVersion) -> Element {
        Element::from(&version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::test_support::{reparse, xml};

    /// XEP-0092 §2, "Receiving a Reply Regarding Software Version".
    #[test]
    fn reads_the_xep_0092_example() {
        let version = SoftwareVersion::try_from(&xml("<query xmlns='jabber:iq:version'>
            <name>Exodus</name>
            <version>0.7.0.4</version>
            <os>Windows-XP 5.01.2600</os>
          </query>"))
        .expect("version");
        assert_eq!(version.name, "Exodus");
        assert_eq!(version.os.as_deref(), Some("Windows-XP 5.01.2600"));
        assert_eq!(SoftwareVersion::try_from(&reparse(&Element::from(&version))).as_ref(), Ok(&version));
        // What the server answers today: name and version, no OS.
        let ours = SoftwareVersion { name: "Starling".into(), version: "0.1.0".into(), os: None };
        assert_eq!(
            Element::from(&ours).to_bytes(),
            b"<query xmlns='jabber:iq:version'><name>Starling</name><version>0.1.0</version></query>"
        );
    }

    #[test]
    fn refuses_a_result_without_name_or_version() {
        let bad = |text: &str| SoftwareVersion::try_from(&xml(text));
        assert_eq!(
            bad("<query xmlns='jabber:iq:version'/>"),
            Err(PayloadError::MissingChild { element: "query", child: "name" })
        );
        assert_eq!(
            bad("<query xmlns='jabber:iq:version'><name>x</name></query>"),
            Err(PayloadError::MissingChild { element: "query", child: "version" })
        );
    }
}
