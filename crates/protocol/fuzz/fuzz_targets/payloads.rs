//! Every payload reader on whatever element arbitrary bytes parse to (data forms, MAM and RSM
//! queries, roster, MUC, PubSub, disco, push, registration…): a refusal is fine, a panic is not, and
//! the refusal always maps to a stanza error condition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_protocol::payload::*;
use starling_protocol::PayloadError;
use starling_xml::Element;

fn read<'a, T: TryFrom<&'a Element, Error = PayloadError>>(element: &'a Element) {
    if let Err(error) = T::try_from(element) {
        let _ = error.condition();
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(element) = Element::parse(data) else { return };
    // Each reader checks the element's name itself; the fuzzer's inputs reach each one through
    // the names and namespaces in its dictionary of what it has seen work.
    for element in std::iter::once(&element).chain(element.children()) {
        read::<RosterItem>(element);
        read::<RosterQuery>(element);
        read::<SoftwareVersion>(element);
        read::<MamFin>(element);
        read::<MamMetadata>(element);
        read::<MamQuery>(element);
        read::<MamPrefs>(element);
        read::<Ping>(element);
        read::<RegisterQuery>(element);
        read::<LastActivity>(element);
        read::<Identity>(element);
        read::<DiscoInfoQuery>(element);
        read::<DiscoInfoResult>(element);
        read::<DiscoItemsQuery>(element);
        read::<DiscoItemsResult>(element);
        read::<Field>(element);
        read::<DataForm>(element);
        read::<ExternalServicesQuery>(element);
        read::<PrivateQuery>(element);
        read::<PushEnable>(element);
        read::<PushDisable>(element);
        read::<EntityTime>(element);
        read::<RsmSet>(element);
        read::<Block>(element);
        read::<Unblock>(element);
        read::<Blocklist>(element);
        read::<muc::MucJoin>(element);
        read::<muc::MucUser>(element);
        read::<pubsub::PubSubRequest>(element);
        read::<pubsub::PubSubOwnerRequest>(element);
    }
});
