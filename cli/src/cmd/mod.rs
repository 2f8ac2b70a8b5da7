//! One module per subcommand: its clap types and its `run`. No module here
//! imports another (shared helpers: `crate::common`); `fleet records` is
//! `fleet::records`.

pub mod acl;
pub mod apdu;
pub mod audit;
pub mod authority;
pub mod bootstrap;
pub mod docs;
pub mod firmware;
pub mod fleet;
pub mod info;
pub mod mo;
pub mod object;
pub mod ota;
pub mod pin;
pub mod policy;
pub mod shell;
pub mod sim;
pub mod uicc;
