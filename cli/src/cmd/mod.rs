//! One module per subcommand.

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
pub mod records;
pub mod shell;
pub mod sim;
pub mod uicc;
