//! Decoding helpers for values inside TLV fields (leaf of the command set:
//! uses only the TLV codec and [`DecodeError`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::tlv::TlvError;

use super::DecodeError;

/// A big-endian `u32` of exactly 4 bytes.
pub(super) fn be_u32(bytes: &[u8], what: &'static str) -> Result<u32, DecodeError> {
    let arr: [u8; 4] = bytes.try_into().map_err(|_| DecodeError::Field(what))?;
    Ok(u32::from_be_bytes(arr))
}

/// A UTF-8 string; an invalid one is a malformed value of `tag`.
pub(super) fn utf8(bytes: &[u8], tag: u32) -> Result<String, DecodeError> {
    core::str::from_utf8(bytes)
        .map(|s| s.to_string())
        .map_err(|_| DecodeError::from(TlvError::InvalidValue { tag }))
}

/// Exactly one byte.
pub(super) fn one_byte(bytes: &[u8], what: &'static str) -> Result<u8, DecodeError> {
    match bytes {
        [b] => Ok(*b),
        _ => Err(DecodeError::Field(what)),
    }
}

/// An uncompressed SEC1 P-256 point (65 bytes, `04` first).
pub(super) fn point(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if bytes.len() != 65 || bytes[0] != 0x04 {
        return Err(DecodeError::Field("uncompressed P-256 point (65 bytes)"));
    }
    Ok(bytes.to_vec())
}
