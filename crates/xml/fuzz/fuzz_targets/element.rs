//! `Element::parse` on arbitrary bytes: errors are fine, panics are not, and whatever parses
//! serialises to bytes that parse back to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_xml::Element;

fuzz_target!(|data: &[u8]| {
    if let Ok(element) = Element::parse(data) {
        let again = Element::parse(&element.to_bytes()).expect("our own output parses");
        assert_eq!(again, element);
    }
});
