//! XEP-0347 Internet of Things — Discovery: the requests a Thing Registry answers (register,
//! claim with `mine`, update, remove, unregister, disown, search), the elements it answers and
//! notifies Things with, and the meta tags they carry. Pure data: the registry decides.

use starling_xml::Element;

use super::{bool_attr, jid_attr, PayloadError};
use crate::jid::Jid;
use crate::ns;

/// Longest tag name and string value the XEP allows (§3.1 "Meta Tags").
pub const MAX_TAG_NAME: usize = 32;
pub const MAX_STRING_VALUE: usize = 128;

/// One meta tag: a string or a number (`<str/>`, `<num/>`). Names are case-insensitive, so they
/// are kept upper-case.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaTag {
    pub name: String,
    pub value: TagValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    Str(String),
    /// The number, and its text as it came (written back as it came).
    Num(f64, String),
}

impl MetaTag {
    pub fn is_key(&self) -> bool {
        self.name == "KEY"
    }

    fn read(element: &Element) -> Result<Option<MetaTag>, PayloadError> {
        let kind = match element.name() {
            "str" | "num" if element.ns() == ns::IOT_DISCOVERY => element.name(),
            _ => return Ok(None),
        };
        let name = element.attr("name").ok_or(PayloadError::MissingAttribute { element: "tag", attribute: "name" })?;
        if name.is_empty() || name.chars().count() > MAX_TAG_NAME || name.contains([':', '#']) || name.contains(char::is_whitespace) {
            return Err(PayloadError::invalid("meta tag name", name));
        }
        let text = element.attr("value").ok_or(PayloadError::MissingAttribute { element: "tag", attribute: "value" })?;
        let value = if kind == "str" {
            if text.chars().count() > MAX_STRING_VALUE {
                return Err(PayloadError::invalid("meta tag value", text));
            }
            TagValue::Str(text.to_owned())
        } else {
            let number: f64 = text.trim().parse().map_err(|_| PayloadError::invalid("numeric meta tag", text))?;
            if !number.is_finite() {
                return Err(PayloadError::invalid("numeric meta tag", text));
            }
            TagValue::Num(number, text.trim().to_owned())
        };
        Ok(Some(MetaTag { name: name.to_uppercase(), value }))
    }

    pub fn to_element(&self) -> Element {
        let (kind, text) = match &self.value {
            TagValue::Str(text) => ("str", text.as_str()),
            TagValue::Num(_, text) => ("num", text.as_str()),
        };
        Element::new(kind, ns::IOT_DISCOVERY).with_attr("name", self.name.as_str()).with_attr("value", text)
    }

    /// Whether `other` is the same tag: same name, type and value (numbers compared as numbers).
    pub fn same_as(&self, other: &MetaTag) -> bool {
        self.name == other.name
            && match (&self.value, &other.value) {
                (TagValue::Str(a), TagValue::Str(b)) => a == b,
                (TagValue::Num(a, _), TagValue::Num(b, _)) => a == b,
                _ => false,
            }
    }
}

/// The tags among `element`'s children; a name given twice is `bad-request`.
pub fn tags_in(element: &Element, max: usize) -> Result<Vec<MetaTag>, PayloadError> {
    let mut tags: Vec<MetaTag> = Vec::new();
    for child in element.children() {
        let Some(tag) = MetaTag::read(child)? else { continue };
        if tags.iter().any(|seen| seen.name == tag.name) {
            return Err(PayloadError::Duplicate { what: "meta tag", value: tag.name });
        }
        if tags.len() == max {
            return Err(PayloadError::NotAcceptable("too many meta tags"));
        }
        tags.push(tag);
    }
    Ok(tags)
}

/// A Thing behind a concentrator (XEP-0326): its node, source and cache type; all empty for a
/// Thing that is its own JID.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeInfo {
    pub node_id: Option<String>,
    pub source_id: Option<String>,
    pub cache_type: Option<String>,
}

impl NodeInfo {
    pub fn read(element: &Element) -> NodeInfo {
        let attr = |name| element.attr(name).filter(|value| !value.is_empty()).map(str::to_owned);
        NodeInfo { node_id: attr("nodeId"), source_id: attr("sourceId"), cache_type: attr("cacheType") }
    }

    /// Writes the attributes there are onto `element`.
    pub fn write(&self, mut element: Element) -> Element {
        for (name, value) in [("nodeId", &self.node_id), ("sourceId", &self.source_id), ("cacheType", &self.cache_type)] {
            if let Some(value) = value {
                element = element.with_attr(name, value.as_str());
            }
        }
        element
    }
}

/// One search operator (§3.12): on string tags or on numeric ones.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchOperator {
    Str { name: String, test: Comparison<String> },
    Num { name: String, test: Comparison<f64> },
    /// `strMask`: the value with `wildcard` standing for any run of characters.
    Mask { name: String, pattern: String, wildcard: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Comparison<T> {
    Eq(T),
    NotEq(T),
    Greater(T),
    GreaterOrEq(T),
    Less(T),
    LessOrEq(T),
    /// Within (or, `inside: false`, outside) min..max, each end included when said so.
    Range { min: T, min_included: bool, max: T, max_included: bool, inside: bool },
}

impl<T: PartialOrd> Comparison<T> {
    pub fn holds(&self, value: &T) -> bool {
        match self {
            Comparison::Eq(operand) => value == operand,
            Comparison::NotEq(operand) => value != operand,
            Comparison::Greater(operand) => value > operand,
            Comparison::GreaterOrEq(operand) => value >= operand,
            Comparison::Less(operand) => value < operand,
            Comparison::LessOrEq(operand) => value <= operand,
            Comparison::Range { min, min_included, max, max_included, inside } => {
                let above = if *min_included { value >= min } else { value > min };
                let below = if *max_included { value <= max } else { value < max };
                (above && below) == *inside
            }
        }
    }
}

/// A search: its operators (all must hold), and the page asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub operators: Vec<SearchOperator>,
    pub offset: usize,
    pub max_count: Option<usize>,
}

/// What a request to a registry asks (§3.6–3.17).
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryRequest {
    Register { node: NodeInfo, self_owned: bool, tags: Vec<MetaTag> },
    Mine { public: bool, tags: Vec<MetaTag> },
    /// By the Thing (`jid` absent) or by its owner.
    Update { jid: Option<Jid>, node: NodeInfo, tags: Vec<MetaTag> },
    Remove { jid: Jid, node: NodeInfo },
    Unregister { node: NodeInfo },
    Disown { jid: Jid, node: NodeInfo },
    Search(Search),
}

impl RegistryRequest {
    /// Reads a request payload (any element of the namespace); `max_tags` bounds the tags taken.
    pub fn read(payload: &Element, max_tags: usize) -> Result<RegistryRequest, PayloadError> {
        if payload.ns() != ns::IOT_DISCOVERY {
            return Err(PayloadError::UnexpectedElement { name: "register", ns: ns::IOT_DISCOVERY, found: payload.name().to_owned() });
        }
        let node = NodeInfo::read(payload);
        let thing = || jid_attr(payload, "jid", "thing").map(|jid| jid.bare());
        Ok(match payload.name() {
            "register" => RegistryRequest::Register { node, self_owned: bool_attr(payload, "selfOwned", "selfOwned", false)?, tags: tags_in(payload, max_tags)? },
            "mine" => RegistryRequest::Mine { public: bool_attr(payload, "public", "public", true)?, tags: tags_in(payload, max_tags)? },
            "update" => {
                let jid = if payload.attr("jid").is_some() { Some(thing()?) } else { None };
                RegistryRequest::Update { jid, node, tags: tags_in(payload, max_tags)? }
            }
            "remove" => RegistryRequest::Remove { jid: thing()?, node },
            "unregister" => RegistryRequest::Unregister { node },
            "disown" => RegistryRequest::Disown { jid: thing()?, node },
            "search" => RegistryRequest::Search(read_search(payload)?),
            other => return Err(PayloadError::Unsupported(format!("<{other} xmlns='{}'/>", ns::IOT_DISCOVERY))),
        })
    }
}

fn read_search(search: &Element) -> Result<Search, PayloadError> {
    let count = |attribute: &'static str| search.attr(attribute).map(|text| super::parse_count(text, attribute)).transpose();
    let operators = search.children().filter(|child| child.ns() == ns::IOT_DISCOVERY).map(read_operator).collect::<Result<Vec<_>, _>>()?;
    if operators.is_empty() {
        return Err(PayloadError::MissingChild { element: "search", child: "strEq" });
    }
    Ok(Search { operators, offset: count("offset")?.unwrap_or(0), max_count: count("maxCount")?.filter(|count| *count > 0) })
}

fn read_operator(element: &Element) -> Result<SearchOperator, PayloadError> {
    let required = |attribute: &'static str| element.attr(attribute).ok_or(PayloadError::MissingAttribute { element: "search operator", attribute });
    let name = required("name")?.to_uppercase();
    let operator = element.name();
    if operator == "strMask" {
        let wildcard = required("wildcard")?;
        if wildcard.is_empty() {
            return Err(PayloadError::invalid("wildcard", wildcard));
        }
        return Ok(SearchOperator::Mask { name, pattern: required("value")?.to_owned(), wildcard: wildcard.to_owned() });
    }
    let (is_str, test) = match (operator.strip_prefix("str"), operator.strip_prefix("num")) {
        (Some(test), _) => (true, test),
        (_, Some(test)) => (false, test),
        _ => return Err(PayloadError::Unsupported(format!("search operator <{operator}/>"))),
    };
    if is_str {
        let comparison = comparison(element, test, &|text: &str| Ok(text.to_owned()))?;
        Ok(SearchOperator::Str { name, test: comparison })
    } else {
        let number = |text: &str| text.trim().parse::<f64>().ok().filter(|number| number.is_finite()).ok_or_else(|| PayloadError::invalid("number", text));
        Ok(SearchOperator::Num { name, test: comparison(element, test, &number)? })
    }
}

fn comparison<T>(element: &Element, test: &str, value: &dyn Fn(&str) -> Result<T, PayloadError>) -> Result<Comparison<T>, PayloadError> {
    let required = |attribute: &'static str| element.attr(attribute).ok_or(PayloadError::MissingAttribute { element: "search operator", attribute });
    let operand = || value(required("value")?);
    Ok(match test {
        "Eq" => Comparison::Eq(operand()?),
        "NEq" => Comparison::NotEq(operand()?),
        "Gt" => Comparison::Greater(operand()?),
        "GtEq" => Comparison::GreaterOrEq(operand()?),
        "Lt" => Comparison::Less(operand()?),
        "LtEq" => Comparison::LessOrEq(operand()?),
        "Range" | "NRange" => Comparison::Range {
            min: value(required("min")?)?,
            min_included: bool_attr(element, "minIncluded", "minIncluded", true)?,
            max: value(required("max")?)?,
            max_included: bool_attr(element, "maxIncluded", "maxIncluded", true)?,
            inside: test == "Range",
        },
        other => return Err(PayloadError::Unsupported(format!("search operator {other}"))),
    })
}

/// `<claimed jid=…/>`: to an owner, the Thing it claimed; to a Thing, its owner (and whether it
/// is public).
pub fn claimed(jid: &Jid, node: &NodeInfo, public: Option<bool>) -> Element {
    let claimed = node.write(Element::new("claimed", ns::IOT_DISCOVERY).with_attr("jid", jid.as_str()));
    match public {
        Some(false) => claimed.with_attr("public", "false"),
        _ => claimed,
    }
}

/// A notification or answer carrying only the Thing's node information (`removed`, `disowned`).
pub fn about_node(name: &str, node: &NodeInfo) -> Element {
    node.write(Element::new(name, ns::IOT_DISCOVERY))
}

/// One search hit: the Thing, its owner, and its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundThing {
    pub owner: Jid,
    pub jid: Jid,
    pub node: NodeInfo,
    pub tags: Vec<MetaTag>,
}

/// `<found more=…>` with the hits of one page.
pub fn found(things: &[FoundThing], more: bool) -> Element {
    let mut found = Element::new("found", ns::IOT_DISCOVERY).with_attr("more", if more { "true" } else { "false" });
    for thing in things {
        let mut element = thing.node.write(Element::new("thing", ns::IOT_DISCOVERY).with_attr("owner", thing.owner.as_str()).with_attr("jid", thing.jid.as_str()));
        for tag in &thing.tags {
            element.push_child(tag.to_element());
        }
        found.push_child(element);
    }
    found
}

#[cfg(test)]
#[path = "iot_discovery_tests.rs"]
mod tests;
