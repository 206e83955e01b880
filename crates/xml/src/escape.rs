//! Escaping for the bytes we write ourselves. Text escapes `<`, `>` and `&`; attribute values also
//! escape both quote kinds so that either quoting style in a peer's template stays valid.

/// Appends `text` escaped as character data.
pub fn escape_text(out: &mut Vec<u8>, text: &str) {
    escape_into(out, text, false);
}

/// Appends `value` escaped for use inside a quoted attribute value.
pub fn escape_attr(out: &mut Vec<u8>, value: &str) {
    escape_into(out, value, true);
}

fn escape_into(out: &mut Vec<u8>, s: &str, quotes: bool) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let replacement: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\'' if quotes => b"&apos;",
            b'"' if quotes => b"&quot;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(replacement);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        let mut out = Vec::new();
        escape_attr(&mut out, r#"a<b>&'c""#);
        assert_eq!(out, b"a&lt;b&gt;&amp;&apos;c&quot;");
        let mut out = Vec::new();
        escape_text(&mut out, "it's <fine>");
        assert_eq!(out, b"it's &lt;fine&gt;");
    }
}
