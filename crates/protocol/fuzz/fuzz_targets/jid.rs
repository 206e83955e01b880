//! `Jid::new` on arbitrary text (RFC 7622: PRECIS, IDNA, lengths): errors are fine, panics are not,
//! and a JID that was accepted is accepted again as it prints, unchanged, with the same bare JID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_protocol::Jid;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(jid) = Jid::new(text) {
        let again = Jid::new(jid.as_str()).expect("a normalised JID parses");
        assert_eq!(again, jid);
        assert_eq!(Jid::new(jid.bare().as_str()).expect("its bare JID parses"), jid.bare());
    }
});
