//! The seams between the session layer and its backends. `store` defines what the server keeps
//! about a user (account credentials, roster, vCard, private XML, block list, offline messages,
//! last activity, message archive) as async traits, bundled in [`store::Store`]; `gateway` is the hand-off between a
//! client connection and the session layer; `envelope` is the one place the records nodes send
//! each other over the bus are built and read; `registry` is the routing state a cluster shares (who is
//! bound where, which nodes live), with its in-process implementation. With the `contract` feature,
//! `contract` holds the test suites every storage and registry backend must pass.
//!
//! This crate must not know any backend (redb, Cassandra, …) nor any XMPP semantics beyond the
//! shapes of the data: users and contacts are opaque, already normalised bare-JID strings, and
//! stanzas are opaque bytes. Parsing, authorisation and protocol rules stay in the session layer.

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod bus;
pub mod bus_gateway;
pub mod envelope;
pub mod failure_counts;
pub mod gateway;
pub mod hold;
pub mod liveness;
pub mod registry;
pub mod store;
mod stream_copy;
pub mod window;
