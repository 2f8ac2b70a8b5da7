//! One module per subcommand.

pub mod acl;
pub mod apdu;
pub mod audit;
pub mod authority;
pub mod docs;
pub mod fleet;
pub mod info;
pub mod object;
pub mod pin;
pub mod sim;
