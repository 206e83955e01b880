//! The feature modules, one per RFC area or XEP, each with one `register` function. A new feature
//! is a new file here and one line in [`ALL`].

use crate::registry::Register;

pub(crate) use disco::{caps_ver, server_items_of, CAPS_NODE};
pub use admin::{end_sessions_order, EndReason};

mod admin;
mod bind2;
mod blocking;
mod carbons;
mod disco;
mod external_services;
mod iot;
mod last_activity;
pub(crate) mod mam;
mod message_rate;
mod muc;
mod offline;
mod pep;
mod pubsub;
mod ping;
mod presence;
mod private_xml;
mod push;
mod register;
mod roster;
mod session_iq;
mod time;
mod vcard;
mod version;

/// Every module the server runs, in registration order (hooks run by their own order numbers).
pub(crate) const ALL: &[Register] = &[
    disco::register,
    admin::register,
    message_rate::register,
    roster::register,
    presence::register,
    // Before offline: both take undeliverable messages, and push lets them go on to storage.
    push::register,
    offline::register,
    blocking::register,
    bind2::register,
    carbons::register,
    mam::register,
    muc::register,
    pep::register,
    pubsub::register,
    iot::register,
    vcard::register,
    private_xml::register,
    version::register,
    last_activity::register,
    ping::register,
    register::register,
    session_iq::register,
    time::register,
    external_services::register,
];
