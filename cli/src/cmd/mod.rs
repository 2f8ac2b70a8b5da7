//! One module per subcommand.

pub mod apdu;
pub mod audit;
pub mod docs;
pub mod info;
pub mod object;
pub mod pin;
pub mod policy;
pub mod sim;
