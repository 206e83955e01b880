//! One module per subcommand.

pub mod chat;
pub mod connect;
pub mod mam;
pub mod presence;
