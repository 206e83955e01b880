//! A minimal owned element tree, for handlers that need to read or build a payload. The routing path
//! never builds one: it forwards the bytes the reader framed.
//!
//! Over 400 lines with its tests beside it: parse, build and write are one small type.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::escape::{escape_attr, escape_text};
use crate::names::is_qname;
use crate::Limits;

/// An XML element with its namespace resolved. Attribute names are kept as written (`xml:lang`,
/// `type`); default namespace declarations are not attributes, the `ns` field carries them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

/// A child of an element: an element or a run of character data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// Why bytes could not be read as one element.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    /// Markup XMPP forbids (RFC 6120 §11.1): DTDs, comments, processing instructions, unknown entities.
    #[error("restricted XML: {0}")]
    Restricted(&'static str),
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Element {
        Element { name: name.into(), ns: ns.into(), attrs: Vec::new(), children: Vec::new() }
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Element {
        self.set_attr(name, value);
        self
    }

    /// Builder form of [`Element::push_child`].
    pub fn with_child(mut self, child: Element) -> Element {
        self.push_child(child);
        self
    }

    /// Builder form of [`Element::push_text`].
    pub fn with_text(mut self, text: impl Into<String>) -> Element {
        self.push_text(text);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// True when this element is `name` in namespace `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets or replaces an attribute.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let index = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(index).1)
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    pub fn push_text(&mut self, text: impl Into<String>) {
        self.children.push(Node::Text(text.into()));
    }

    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    /// Child elements, in document order.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn into_children(self) -> impl Iterator<Item = Element> {
        self.children.into_iter().filter_map(|node| match node {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element called `name` in namespace `ns`.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|c| c.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|node| match node {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Removes and returns the first child element called `name` in namespace `ns`.
    pub fn take_child(&mut self, name: &str, ns: &str) -> Option<Element> {
        let index = self.children.iter().position(|n| matches!(n, Node::Element(e) if e.is(name, ns)))?;
        match self.children.remove(index) {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        }
    }

    /// Removes every child element for which `remove` is true; text is kept.
    pub fn remove_children(&mut self, mut remove: impl FnMut(&Element) -> bool) {
        self.children.retain(|n| !matches!(n, Node::Element(e) if remove(e)));
    }

    /// The concatenated character data directly inside this element.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                out.push_str(t);
            }
        }
        out
    }

    /// Parses exactly one element from `bytes` (surrounding whitespace allowed), with the default
    /// limits. The element must declare its own namespace: there is no stream context here.
    pub fn parse(bytes: &[u8]) -> Result<Element, ParseError> {
        Element::parse_with_limits(bytes, &Limits::default())
    }

    pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<Element, ParseError> {
        if bytes.len() > limits.max_stanza_bytes {
            return Err(ParseError::LimitExceeded("element size"));
        }
        let mut reader = NsReader::from_reader(bytes);
        reader.config_mut().check_end_names = true;
        // Open elements; the finished root is returned when the stack empties.
        let mut stack: Vec<Element> = Vec::new();
        loop {
            let (ns, event) = reader.read_resolved_event().map_err(not_well_formed)?;
            match event {
                Event::Start(start) | Event::Empty(start) if stack.len() >= limits.max_depth => {
                    let _ = start;
                    return Err(ParseError::LimitExceeded("nesting depth"));
                }
                Event::Start(start) => {
                    let element = element_from_start(&ns, &start, limits)?;
                    stack.push(element);
                }
                Event::Empty(start) => {
                    let element = element_from_start(&ns, &start, limits)?;
                    match stack.last_mut() {
                        Some(parent) => parent.push_child(element),
                        None => return finish(&mut reader, element),
                    }
                }
                Event::End(_) => {
                    let element = stack.pop().ok_or_else(|| ParseError::NotWellFormed("unmatched end tag".into()))?;
                    match stack.last_mut() {
                        Some(parent) => parent.push_child(element),
                        None => return finish(&mut reader, element),
                    }
                }
                Event::Text(text) => {
                    let content = text.xml10_content();
                    match stack.last_mut() {
                        Some(parent) => parent.push_text_merged(&content),
                        None if content.trim().is_empty() => {}
                        None => return Err(ParseError::NotWellFormed("text outside the element".into())),
                    }
                }
                Event::CData(data) => {
                    let content = data.xml10_content();
                    match stack.last_mut() {
                        Some(parent) => parent.push_text_merged(&content),
                        None => return Err(ParseError::NotWellFormed("CDATA outside the element".into())),
                    }
                }
                Event::GeneralRef(reference) => {
                    let resolved = resolve_reference(&reference)?;
                    match stack.last_mut() {
                        Some(parent) => parent.push_text_merged(&resolved),
                        None => return Err(ParseError::NotWellFormed("reference outside the element".into())),
                    }
                }
                Event::Comment(_) => return Err(ParseError::Restricted("comment")),
                Event::PI(_) => return Err(ParseError::Restricted("processing instruction")),
                Event::DocType(_) => return Err(ParseError::Restricted("document type declaration")),
                Event::Decl(_) => return Err(ParseError::Restricted("XML declaration inside an element")),
                Event::Eof => return Err(ParseError::NotWellFormed("unexpected end of input".into())),
            }
        }
    }

    fn push_text_merged(&mut self, text: &str) {
        if let Some(Node::Text(last)) = self.children.last_mut() {
            last.push_str(text);
        } else {
            self.children.push(Node::Text(text.to_owned()));
        }
    }

    /// Serialises with an `xmlns` declaration (the element stands alone).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_in_ns(&mut out, "");
        out
    }

    /// Serialises as a child of an element whose default namespace is `parent_ns`: `xmlns` is written
    /// only where the namespace changes. Writing a stanza into a `jabber:client` stream passes that.
    pub fn write_in_ns(&self, out: &mut Vec<u8>, parent_ns: &str) {
        let declared = (self.ns != parent_ns).then_some(self.ns.as_str());
        self.write(out, None, declared, &self.ns);
    }

    /// Serialises with its name as `prefix:name`, for a prefix an enclosing element already bound
    /// to this element's namespace (a stream header binds `stream`, so `<stream:features/>` is
    /// written this way). The namespace is not declared here; every child declares its own, since
    /// the default namespace in scope is the enclosing element's business.
    pub fn write_prefixed(&self, out: &mut Vec<u8>, prefix: &str) {
        self.write(out, Some(prefix), None, "");
    }

    /// Writes the element named `prefix:name` (or `name`), declaring `declared` as its default
    /// namespace if given; children are written as inside default namespace `children_ns`.
    fn write(&self, out: &mut Vec<u8>, prefix: Option<&str>, declared: Option<&str>, children_ns: &str) {
        out.push(b'<');
        write_qualified_name(out, prefix, &self.name);
        if let Some(ns) = declared {
            out.extend_from_slice(b" xmlns='");
            escape_attr(out, ns);
            out.push(b'\'');
        }
        for (name, value) in &self.attrs {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"='");
            escape_attr(out, value);
            out.push(b'\'');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for node in &self.children {
            match node {
                Node::Element(child) => child.write_in_ns(out, children_ns),
                Node::Text(text) => escape_text(out, text),
            }
        }
        out.extend_from_slice(b"</");
        write_qualified_name(out, prefix, &self.name);
        out.push(b'>');
    }
}

fn write_qualified_name(out: &mut Vec<u8>, prefix: Option<&str>, name: &str) {
    if let Some(prefix) = prefix {
        out.extend_from_slice(prefix.as_bytes());
        out.push(b':');
    }
    out.extend_from_slice(name.as_bytes());
}

fn finish(reader: &mut NsReader<&[u8]>, element: Element) -> Result<Element, ParseError> {
    loop {
        match reader.read_event().map_err(not_well_formed)? {
            Event::Eof => return Ok(element),
            Event::Text(t) if t.xml10_content().trim().is_empty() => {}
            _ => return Err(ParseError::NotWellFormed("content after the element".into())),
        }
    }
}

fn not_well_formed(error: quick_xml::Error) -> ParseError {
    ParseError::NotWellFormed(error.to_string())
}

/// Resolves `&name;`/`&#n;`: only XML's five predefined entities and character references exist in
/// XMPP, so anything else was declared by a DTD we refuse.
pub(crate) fn resolve_reference(reference: &BytesRef<'_>) -> Result<String, ParseError> {
    if let Some(ch) = reference.resolve_char_ref().map_err(not_well_formed)? {
        return Ok(ch.to_string());
    }
    let name = reference.xml10_content();
    resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or(ParseError::Restricted("undeclared entity reference"))
}

fn element_from_start(ns: &ResolveResult<'_>, start: &BytesStart<'_>, limits: &Limits) -> Result<Element, ParseError> {
    let ns = match ns {
        ResolveResult::Bound(ns) => ns.0.to_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(prefix) => return Err(ParseError::NotWellFormed(format!("unbound prefix {prefix}"))),
    };
    if !is_qname(start.name().into_inner()) {
        return Err(ParseError::NotWellFormed(format!("invalid element name {:?}", start.name().into_inner())));
    }
    let name = start.local_name().into_inner().to_owned();
    let mut element = Element::new(name, ns);
    for (count, attr) in start.attributes().enumerate() {
        if count >= limits.max_attributes {
            return Err(ParseError::LimitExceeded("attribute count"));
        }
        let attr = attr.map_err(|e| ParseError::NotWellFormed(e.to_string()))?;
        let key = attr.key.into_inner();
        if !is_qname(key) {
            return Err(ParseError::NotWellFormed(format!("invalid attribute name {key:?}")));
        }
        if key == "xmlns" {
            continue;
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| match e {
                quick_xml::Error::Escape(_) => ParseError::Restricted("undeclared entity reference"),
                other => not_well_formed(other),
            })?;
        element.attrs.push((key.to_owned(), value.into_owned()));
    }
    Ok(element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_attributes_and_text() {
        let e = Element::parse(
            b"<iq xmlns='jabber:client' type='get' id='a&amp;b'><query xmlns='jabber:iq:roster'/><x:y xmlns:x='urn:x'>t&lt;&#x263A;</x:y></iq>",
        )
        .expect("parses");
        assert!(e.is("iq", "jabber:client"));
        assert_eq!(e.attr("id"), Some("a&b"));
        assert!(e.get_child("query", "jabber:iq:roster").is_some());
        let y = e.get_child("y", "urn:x").expect("prefixed child resolved");
        assert_eq!(y.text(), "t<☺");
    }

    #[test]
    fn round_trips_through_bytes() {
        let e = Element::new("message", "jabber:client")
            .with_attr("to", "a@b")
            .with_child(Element::new("body", "jabber:client").with_text("x < y & 'z'"))
            .with_child(Element::new("received", "urn:xmpp:receipts").with_attr("id", "1"));
        let bytes = e.to_bytes();
        assert_eq!(
            bytes,
            b"<message xmlns='jabber:client' to='a@b'><body>x &lt; y &amp; 'z'</body><received xmlns='urn:xmpp:receipts' id='1'/></message>"
        );
        assert_eq!(Element::parse(&bytes), Ok(e));
    }

    #[test]
    fn writes_a_prefixed_element_with_children_declaring_their_namespaces() {
        let features = Element::new("features", "http://etherx.jabber.org/streams")
            .with_child(Element::new("starttls", "urn:ietf:params:xml:ns:xmpp-tls").with_child(Element::new("required", "urn:ietf:params:xml:ns:xmpp-tls")))
            .with_child(Element::new("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl").with_child(Element::new("mechanism", "urn:ietf:params:xml:ns:xmpp-sasl").with_text("PLAIN")));
        let mut out = Vec::new();
        features.write_prefixed(&mut out, "stream");
        assert_eq!(
            out,
            b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        );
        let mut empty = Vec::new();
        Element::new("features", "http://etherx.jabber.org/streams").write_prefixed(&mut empty, "stream");
        assert_eq!(empty, b"<stream:features/>");
    }

    #[test]
    fn refuses_restricted_markup() {
        assert_eq!(Element::parse(b"<a xmlns='x'><!-- c --></a>"), Err(ParseError::Restricted("comment")));
        assert_eq!(Element::parse(b"<a xmlns='x'><?pi x?></a>"), Err(ParseError::Restricted("processing instruction")));
        assert_eq!(Element::parse(b"<a xmlns='x'>&lol;</a>"), Err(ParseError::Restricted("undeclared entity reference")));
        assert_eq!(Element::parse(b"<a xmlns='x' b='&lol;'/>"), Err(ParseError::Restricted("undeclared entity reference")));
    }

    #[test]
    fn refuses_malformed_and_trailing_input() {
        assert!(matches!(Element::parse(b"<a xmlns='x'><b></a>"), Err(ParseError::NotWellFormed(_))));
        assert!(matches!(Element::parse(b"<a xmlns='x'/><b/>"), Err(ParseError::NotWellFormed(_))));
        assert!(matches!(Element::parse(b"<a xmlns='x'>"), Err(ParseError::NotWellFormed(_))));
        assert!(matches!(Element::parse(b"<p:a/>"), Err(ParseError::NotWellFormed(_))));
    }

    #[test]
    fn enforces_depth_and_attribute_limits() {
        let limits = Limits { max_depth: 3, max_attributes: 2, ..Limits::default() };
        assert!(Element::parse_with_limits(b"<a xmlns='x'><b><c/></b></a>", &limits).is_ok());
        assert_eq!(
            Element::parse_with_limits(b"<a xmlns='x'><b><c><d/></c></b></a>", &limits),
            Err(ParseError::LimitExceeded("nesting depth"))
        );
        assert_eq!(
            Element::parse_with_limits(b"<a xmlns='x' p='1' q='2' r='3'/>", &limits),
            Err(ParseError::LimitExceeded("attribute count"))
        );
    }
}
