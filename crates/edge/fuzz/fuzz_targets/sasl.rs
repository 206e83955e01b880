//! The server side of the SASL exchanges as the negotiation drives them: a mechanism (with or
//! without channel-binding data), the username read from the client's first message, then up to
//! four client messages. Nothing a client sends may panic; a step ends in a challenge, success
//! or a failure condition.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use starling_cluster::store::ScramCredentials;
use starling_edge::fuzzing::{initial_username, Exchange, Step};

const MECHANISMS: [&str; 5] = ["SCRAM-SHA-256", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "PLAIN"];

fuzz_target!(|data: &[u8]| {
    static CREDENTIALS: OnceLock<ScramCredentials> = OnceLock::new();
    let Some((&choice, rest)) = data.split_first() else { return };
    let mechanism = MECHANISMS[usize::from(choice) % MECHANISMS.len()];
    let exporter = (choice & 0x80 != 0).then(|| vec![7u8; 32]);
    let mut messages = rest.split(|&byte| byte == 0xff).take(4);
    let first = messages.next().unwrap_or_default();
    let username = initial_username(mechanism, first).unwrap_or_default();
    // The stored account exists for one name, so both the known and unknown paths run.
    let credentials = (username == "user").then(|| CREDENTIALS.get_or_init(|| ScramCredentials::derive("pencil", 1)).clone());
    let Ok(mut exchange) = Exchange::start(mechanism, username, credentials, exporter) else { return };
    for message in std::iter::once(first).chain(messages) {
        match exchange.step(message) {
            Step::Challenge(_) => {}
            Step::Success(_) | Step::Failure(_) => return,
        }
    }
});
