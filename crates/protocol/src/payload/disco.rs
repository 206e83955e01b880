//! Service Discovery (XEP-0030) info and items, with XEP-0128 extended info forms, and the
//! XEP-0115 §5.1 verification string computed from an info result.

use base64::Engine;
use sha1::{Digest, Sha1};
use starling_xml::Element;

use super::data_form::DataForm;
use super::rsm::RsmSet;
use super::{PayloadError, expect, jid_attr};
use crate::jid::Jid;
use crate::ns;

/// An identity of an entity (XEP-0030 §3.1): category and type are required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub category: String,
    pub type_: String,
    pub name: Option<String>,
    /// `xml:lang` of the name.
    pub lang: Option<String>,
}

impl Identity {
    pub fn new(category: impl Into<String>, type_: impl Into<String>, name: Option<&str>) -> Identity {
        Identity { category: category.into(), type_: type_.into(), name: name.map(str::to_owned), lang: None }
    }
}

impl TryFrom<&Element> for Identity {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<Identity, PayloadError> {
        expect(element, "identity", ns::DISCO_INFO)?;
        let required = |attribute| {
            element
                .attr(attribute)
                .map(str::to_owned)
                .ok_or(PayloadError::MissingAttribute { element: "identity", attribute })
        };
        Ok(Identity {
            category: required("category")?,
            type_: required("type")?,
            name: element.attr("name").map(str::to_owned),
            lang: element.attr("xml:lang").map(str::to_owned),
        })
    }
}

impl From<&Identity> for Element {
    fn from(identity: &Identity) -> Element {
        let mut element = Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", identity.category.as_str())
            .with_attr("type", identity.type_.as_str());
        if let Some(lang) = &identity.lang {
            element.set_attr("xml:lang", lang.as_str());
        }
        if let Some(name) = &identity.name {
            element.set_attr("name", name.as_str());
        }
        element
    }
}

/// A disco#info request (XEP-0030 §3.1), optionally about a node (§3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoInfoQuery {
    pub node: Option<String>,
}

impl TryFrom<&Element> for DiscoInfoQuery {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<DiscoInfoQuery, PayloadError> {
        expect(element, "query", ns::DISCO_INFO)?;
        Ok(DiscoInfoQuery { node: element.attr("node").map(str::to_owned) })
    }
}

impl From<&DiscoInfoQuery> for Element {
    fn from(query: &DiscoInfoQuery) -> Element {
        with_node(Element::new("query", ns::DISCO_INFO), query.node.as_deref())
    }
}

/// A disco#info result (XEP-0030 §3.1) with XEP-0128 extension forms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoInfoResult {
    pub node: Option<String>,
    pub identities: Vec<Identity>,
    pub features: Vec<String>,
    pub extensions: Vec<DataForm>,
}

impl DiscoInfoResult {
    /// The XEP-0115 §5.1 verification string (SHA-1, base64) of these identities, features and
    /// extension forms. Sorting is by octets (i;octet, §5.1); forms without a `FORM_TYPE` are left
    /// out, as §5.4 tells a verifier to ignore them.
    pub fn caps_ver(&self) -> String {
        let mut input = String::new();
        let mut identities: Vec<&Identity> = self.identities.iter().collect();
        identities.sort_by(|a, b| (&a.category, &a.type_, &a.lang).cmp(&(&b.category, &b.type_, &b.lang)));
        for identity in identities {
            let lang = identity.lang.as_deref().unwrap_or_default();
            let name = identity.name.as_deref().unwrap_or_default();
            input.push_str(&format!("{}/{}/{lang}/{name}<", identity.category, identity.type_));
        }
        let mut features: Vec<&str> = self.features.iter().map(String::as_str).collect();
        features.sort_unstable();
        for feature in features {
            input.push_str(feature);
            input.push('<');
        }
        let mut forms: Vec<(&str, &DataForm)> =
            self.extensions.iter().filter_map(|f| Some((f.form_type()?, f))).collect();
        forms.sort_by_key(|(form_type, _)| *form_type);
        for (form_type, form) in forms {
            input.push_str(form_type);
            input.push('<');
            let mut fields: Vec<_> = form.fields.iter().filter(|f| f.var.as_deref() != Some("FORM_TYPE")).collect();
            fields.sort_by(|a, b| a.var.cmp(&b.var));
            for field in fields {
                input.push_str(field.var.as_deref().unwrap_or_default());
                input.push('<');
                let mut values: Vec<&str> = field.values.iter().map(String::as_str).collect();
                values.sort_unstable();
                for value in values {
                    input.push_str(value);
                    input.push('<');
                }
            }
        }
        base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input.as_bytes()))
    }
}

impl TryFrom<&Element> for DiscoInfoResult {
    type Error = PayloadError;

    /// Refuses an identity without category or type, a feature without `var`, and the
    /// duplicates XEP-0030 §3.1 forbids (and XEP-0115 §5.4 treats as poisoning): two identities
    /// with the same category, type and language, or a feature listed twice.
    fn try_from(element: &Element) -> Result<DiscoInfoResult, PayloadError> {
        expect(element, "query", ns::DISCO_INFO)?;
        let mut result =
            DiscoInfoResult { node: element.attr("node").map(str::to_owned), ..DiscoInfoResult::default() };
        for child in element.children() {
            if child.is("identity", ns::DISCO_INFO) {
                let identity = Identity::try_from(child)?;
                let key = |i: &Identity| (i.category.clone(), i.type_.clone(), i.lang.clone());
                if result.identities.iter().any(|seen| key(seen) == key(&identity)) {
                    let value =
                        format!("{}/{}/{}", identity.category, identity.type_, identity.lang.unwrap_or_default());
                    return Err(PayloadError::Duplicate { what: "disco identity", value });
                }
                result.identities.push(identity);
            } else if child.is("feature", ns::DISCO_INFO) {
                let var =
                    child.attr("var").ok_or(PayloadError::MissingAttribute { element: "feature", attribute: "var" })?;
                if result.features.iter().any(|seen| seen == var) {
                    return Err(PayloadError::Duplicate { what: "disco feature", value: var.to_owned() });
                }
                result.features.push(var.to_owned());
            } else if child.is("x", ns::DATA_FORMS) {
                result.extensions.push(DataForm::try_from(child)?);
            }
        }
        Ok(result)
    }
}

impl From<&DiscoInfoResult> for Element {
    fn from(result: &DiscoInfoResult) -> Element {
        let mut element = with_node(Element::new("query", ns::DISCO_INFO), result.node.as_deref());
        for identity in &result.identities {
            element.push_child(identity.into());
        }
        for feature in &result.features {
            element.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature.as_str()));
        }
        for form in &result.extensions {
            element.push_child(form.into());
        }
        element
    }
}

/// A disco#items request (XEP-0030 §4.1), optionally about a node (§4.2), optionally paged
/// (XEP-0059).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoItemsQuery {
    pub node: Option<String>,
    pub rsm: Option<RsmSet>,
}

impl TryFrom<&Element> for DiscoItemsQuery {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<DiscoItemsQuery, PayloadError> {
        expect(element, "query", ns::DISCO_ITEMS)?;
        let rsm = element.get_child("set", ns::RSM).map(RsmSet::try_from).transpose()?;
        Ok(DiscoItemsQuery { node: element.attr("node").map(str::to_owned), rsm })
    }
}

impl From<&DiscoItemsQuery> for Element {
    fn from(query: &DiscoItemsQuery) -> Element {
        let element = with_node(Element::new("query", ns::DISCO_ITEMS), query.node.as_deref());
        match &query.rsm {
            Some(set) => element.with_child(set.into()),
            None => element,
        }
    }
}

/// One item of a disco#items result (XEP-0030 §4.1): a JID, optionally a node and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoItem {
    pub jid: Jid,
    pub node: Option<String>,
    pub name: Option<String>,
}

/// A disco#items result (XEP-0030 §4.1), with the page it is when paged (XEP-0059).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoItemsResult {
    pub node: Option<String>,
    pub items: Vec<DiscoItem>,
    pub rsm: Option<RsmSet>,
}

impl TryFrom<&Element> for DiscoItemsResult {
    type Error = PayloadError;

    fn try_from(element: &Element) -> Result<DiscoItemsResult, PayloadError> {
        expect(element, "query", ns::DISCO_ITEMS)?;
        let items = element
            .children()
            .filter(|c| c.is("item", ns::DISCO_ITEMS))
            .map(|item| {
                Ok(DiscoItem {
                    jid: jid_attr(item, "jid", "disco item")?,
                    node: item.attr("node").map(str::to_owned),
                    name: item.attr("name").map(str::to_owned),
                })
            })
            .collect::<Result<_, PayloadError>>()?;
        let rsm = element.get_child("set", ns::RSM).map(RsmSet::try_from).transpose()?;
        Ok(DiscoItemsResult { node: element.attr("node").map(str::to_owned), items, rsm })
    }
}

impl From<&DiscoItemsResult> for Element {
    fn from(result: &DiscoItemsResult) -> Element {
        let mut element = with_node(Element::new("query", ns::DISCO_ITEMS), result.node.as_deref());
        for item in &result.items {
            let mut child = Element::new("item", ns::DISCO_ITEMS).with_attr("jid", item.jid.as_str());
            if let Some(node) = &item.node {
                child.set_attr("node", node.as_str());
            }
            if let Some(name) = &item.name {
                child.set_attr("name", name.as_str());
            }
            element.push_child(child);
        }
        if let Some(set) = &result.rsm {
            element.push_child(set.into());
        }
        element
    }
}

fn with_node(element: Element, node: Option<&str>) -> Element {
    match node {
        Some(node) => element.with_attr("node", node),
        None => element,
    }
}

macro_rules! owned_into_element {
    ($($t:ty),+) => {$(
        impl From<$t> for Element {
            fn from(value: $t) -> Element {
                Element::from(&value)
            }
        }
    )+};
}

owned_into_element!(Identity, DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult);

#[cfg(test)]
#[path = "disco_tests.rs"]
mod tests;
