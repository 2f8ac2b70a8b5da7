//! PINs and PUKs as they travel: 4 to 8 bytes, padded with `FF` to a block.

use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroizing;

use super::consts::*;
use super::DecodeError;

/// A PIN or PUK: 4–8 bytes, none of them `FF`; zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Pin {
    /// Checks and wraps a PIN.
    pub fn new(bytes: &[u8]) -> Result<Pin, DecodeError> {
        if bytes.len() < PIN_MIN_LEN || bytes.len() > PIN_BLOCK_LEN || bytes.contains(&0xFF) {
            return Err(DecodeError::Field("PIN (4 to 8 bytes)"));
        }
        Ok(Pin(Zeroizing::new(bytes.to_vec())))
    }

    /// The PIN's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The PIN padded with `FF` to [`PIN_BLOCK_LEN`].
    pub fn block(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(self.0.to_vec());
        b.resize(PIN_BLOCK_LEN, 0xFF);
        b
    }

    /// Unpads a PIN block.
    pub fn from_block(block: &[u8]) -> Result<Pin, DecodeError> {
        if block.len() != PIN_BLOCK_LEN {
            return Err(DecodeError::Length("PIN block (8 bytes)"));
        }
        let len = block
            .iter()
            .position(|b| *b == 0xFF)
            .unwrap_or(PIN_BLOCK_LEN);
        if block[len..].iter().any(|b| *b != 0xFF) {
            return Err(DecodeError::Field("PIN block padding"));
        }
        Pin::new(&block[..len])
    }
}

pub(super) fn pin_pair(data: &[u8]) -> Result<(Pin, Pin), DecodeError> {
    if data.len() != 2 * PIN_BLOCK_LEN {
        return Err(DecodeError::Length("two PIN blocks (16 bytes)"));
    }
    Ok((
        Pin::from_block(&data[..PIN_BLOCK_LEN])?,
        Pin::from_block(&data[PIN_BLOCK_LEN..])?,
    ))
}
