/// Bounds on what one peer may make the parser hold. Each overrun is a `policy-violation` for the
/// stream: RFC 6120 §13.12 tells servers to bound stanza size, and depth/attribute caps keep a
/// single stanza's parse cost linear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element, in bytes of wire XML (also bounds whitespace between stanzas).
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza, the stanza itself being depth 1.
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_stanza_bytes: 256 * 1024, max_depth: 32, max_attributes: 64 }
    }
}
