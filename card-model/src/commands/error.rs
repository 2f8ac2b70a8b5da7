//! Why command or response data does not decode.

use core::fmt;

use crate::apdu::Status;
use crate::objects::ModelError;
use crate::tlv::TlvError;

/// Why command data or response data does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Malformed TLV or value.
    Model(ModelError),
    /// The class/instruction/parameters do not name a dmsc command.
    UnknownCommand,
    /// The command data field has the wrong length.
    Length(&'static str),
    /// A value inside the data field has the wrong length or form.
    Field(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Model(e) => write!(f, "{e}"),
            DecodeError::UnknownCommand => f.write_str("not a dmsc command"),
            DecodeError::Length(what) => write!(f, "wrong length of {what}"),
            DecodeError::Field(what) => write!(f, "invalid {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

impl From<ModelError> for DecodeError {
    fn from(e: ModelError) -> Self {
        DecodeError::Model(e)
    }
}

impl From<TlvError> for DecodeError {
    fn from(e: TlvError) -> Self {
        DecodeError::Model(ModelError::Tlv(e))
    }
}

impl DecodeError {
    /// The status word a card answers when a command's data does not decode.
    pub fn status(&self) -> Status {
        match self {
            DecodeError::UnknownCommand => Status::IncorrectP1OrP2Parameter,
            DecodeError::Length(_) => Status::WrongLength,
            DecodeError::Model(_) | DecodeError::Field(_) => Status::IncorrectDataParameter,
        }
    }
}
