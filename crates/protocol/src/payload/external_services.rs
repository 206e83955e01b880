//! External Service Discovery (XEP-0215): the STUN and TURN servers (and the like) a client talks
//! to directly, e.g. to place a call. Pure data: whoever answers supplies the services and any
//! credentials.

use starling_xml::Element;

use super::{PayloadError, expect};
use crate::ns;

/// What a client asks (§3.1, §3.3): every service, or those of one `type`; or credentials for the
/// service at `host` (of `type`, on `port`, when given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalServicesQuery {
    Services { kind: Option<String> },
    Credentials { host: String, kind: Option<String>, port: Option<u16> },
}

/// One service (§3.2): where it is and, for a restricted one, the credentials that let this user in
/// until `expires`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalService {
    /// `stun`, `turn`, `turns`…
    pub kind: String,
    pub host: String,
    pub port: Option<u16>,
    /// `udp` or `tcp`.
    pub transport: Option<String>,
    pub name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// XEP-0082 date-time after which the credentials stop working.
    pub expires: Option<String>,
    /// Whether the service needs credentials.
    pub restricted: bool,
}

/// The answer: `<services/>` (to a services query, with the `type` asked for) or `<credentials/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalServices {
    pub credentials: bool,
    pub kind: Option<String>,
    pub services: Vec<ExternalService>,
}

impl TryFrom<&Element> for ExternalServicesQuery {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<ExternalServicesQuery, PayloadError> {
        if element.is("services", ns::EXTDISCO) {
            return Ok(ExternalServicesQuery::Services { kind: element.attr("type").map(str::to_owned) });
        }
        expect(element, "credentials", ns::EXTDISCO)?;
        let service = element
            .get_child("service", ns::EXTDISCO)
            .ok_or(PayloadError::MissingChild { element: "credentials", child: "service" })?;
        let host = service.attr("host").ok_or(PayloadError::MissingAttribute { element: "service", attribute: "host" })?;
        let port = match service.attr("port") {
            Some(port) => Some(port.trim().parse().map_err(|_| PayloadError::invalid("port", port))?),
            None => None,
        };
        Ok(ExternalServicesQuery::Credentials { host: host.to_owned(), kind: service.attr("type").map(str::to_owned), port })
    }
}

impl From<&ExternalServices> for Element {
    fn from(answer: &ExternalServices) -> Element {
        let mut element = Element::new(if answer.credentials { "credentials" } else { "services" }, ns::EXTDISCO);
        if let Some(kind) = &answer.kind {
            element.set_attr("type", kind.as_str());
        }
        for service in &answer.services {
            let mut child = Element::new("service", ns::EXTDISCO).with_attr("type", service.kind.as_str()).with_attr("host", service.host.as_str());
            let optional = [
                ("port", service.port.map(|port| port.to_string())),
                ("transport", service.transport.clone()),
                ("name", service.name.clone()),
                ("username", service.username.clone()),
                ("password", service.password.clone()),
                ("expires", service.expires.clone()),
            ];
            for (attribute, value) in optional {
                if let Some(value) = value {
                    child.set_attr(attribute, value);
                }
            }
            if service.restricted {
                child.set_attr("restricted", "1");
            }
            element.push_child(child);
        }
        element
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::test_support::xml;

    #[test]
    fn reads_both_queries_and_writes_the_answer() {
        let all = xml("<services xmlns='urn:xmpp:extdisco:2' type='turn'/>");
        assert_eq!(ExternalServicesQuery::try_from(&all), Ok(ExternalServicesQuery::Services { kind: Some("turn".into()) }));
        let one = xml("<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.com' type='turn' port='3478'/></credentials>");
        assert_eq!(
            ExternalServicesQuery::try_from(&one),
            Ok(ExternalServicesQuery::Credentials { host: "turn.example.com".into(), kind: Some("turn".into()), port: Some(3478) })
        );
        let bad_port = xml("<credentials xmlns='urn:xmpp:extdisco:2'><service host='h' port='x'/></credentials>");
        assert!(ExternalServicesQuery::try_from(&bad_port).is_err());
        let answer = ExternalServices {
            credentials: false,
            kind: None,
            services: vec![ExternalService {
                kind: "turn".into(),
                host: "turn.example.com".into(),
                port: Some(3478),
                transport: Some("udp".into()),
                username: Some("1700000000:alice@example.com".into()),
                password: Some("secret".into()),
                restricted: true,
                ..ExternalService::default()
            }],
        };
        assert_eq!(
            Element::from(&answer),
            xml("<services xmlns='urn:xmpp:extdisco:2'><service type='turn' host='turn.example.com' port='3478' transport='udp' \
                 username='1700000000:alice@example.com' password='secret' restricted='1'/></services>")
        );
    }
}
