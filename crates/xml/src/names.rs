//! XML names (XML 1.0 §2.3 with Namespaces §3): quick-xml takes whatever sits between `<` and a
//! space as a name, so names are checked here; otherwise `<a<b>` would frame, and re-serialised
//! output would not parse.

/// Whether `name` is a QName: an NCName, or two NCNames joined by one colon.
pub(crate) fn is_qname(name: &str) -> bool {
    match name.split_once(':') {
        Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
        None => is_ncname(name),
    }
}

fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}'
        | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_refuses_junk() {
        for ok in ["message", "stream:stream", "xml:lang", "a-b.c_d1", "été"] {
            assert!(is_qname(ok), "{ok}");
        }
        for bad in ["", "1a", "a<b", "stream</eam<", "a:b:c", ":a", "a:", "-a", "a b", "a/"] {
            assert!(!is_qname(bad), "{bad}");
        }
    }
}
