//! What SELECT returns (the FCI template).

use alloc::vec::Vec;

use super::consts::*;
use super::field::{be_u32, one_byte};
use super::{tag, DecodeError};
use crate::objects::{self};
use crate::tlv::{self, TlvError};

/// What SELECT returns: identity, generation and capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectInfo {
    /// Random card identifier made at initialisation.
    pub card_id: [u8; 16],
    /// Applet version (major, minor).
    pub applet_version: (u8, u8),
    /// Grows on every committed change of the card's objects.
    pub generation: u64,
    /// Largest command data field the card accepts in one APDU (Nc).
    pub max_command: u32,
    /// Largest response data field the card returns in one APDU (Ne).
    pub max_response: u32,
    /// Whether the card accepts extended-length APDUs.
    pub extended_length: bool,
    /// Bit map of supported algorithms: see [`algorithms`].
    pub algorithms: u16,
    /// Free object storage in bytes.
    pub free_memory: u32,
    /// All object storage in bytes.
    pub total_memory: u32,
    /// The SCP03 "i" parameter the card uses.
    pub scp_i: u8,
}

/// Bits of [`SelectInfo::algorithms`].
pub mod algorithms {
    /// Bootstrap MAC: AES-CMAC.
    pub const AES_CMAC: u16 = 0x0001;
    /// Bootstrap MAC: HMAC-SHA256.
    pub const HMAC_SHA256: u16 = 0x0002;
    /// Bootstrap MAC: HMAC-SHA1.
    pub const HMAC_SHA1: u16 = 0x0004;
    /// Signatures: ECDSA P-256 with SHA-256.
    pub const ECDSA_P256_SHA256: u16 = 0x0008;
    /// SCP03 with AES-128 keys.
    pub const SCP03_AES128: u16 = 0x0010;
    /// SCP03 with AES-192 keys.
    pub const SCP03_AES192: u16 = 0x0020;
    /// SCP03 with AES-256 keys.
    pub const SCP03_AES256: u16 = 0x0040;
    /// SCP03 S16 mode (16-byte challenges, cryptograms and MACs).
    pub const SCP03_S16: u16 = 0x0080;
}

impl SelectInfo {
    /// The FCI template (tag `6F`).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        tlv::write(&mut p, tag::CARD_ID, &self.card_id);
        tlv::write(
            &mut p,
            tag::APPLET_VERSION,
            &[self.applet_version.0, self.applet_version.1],
        );
        tlv::write(&mut p, tag::GENERATION, &self.generation.to_be_bytes());
        tlv::write(&mut p, tag::MAX_COMMAND, &self.max_command.to_be_bytes());
        tlv::write(&mut p, tag::MAX_RESPONSE, &self.max_response.to_be_bytes());
        tlv::write(&mut p, tag::EXTENDED_LENGTH, &[self.extended_length as u8]);
        tlv::write(&mut p, tag::ALGORITHMS, &self.algorithms.to_be_bytes());
        tlv::write(&mut p, tag::FREE_MEMORY, &self.free_memory.to_be_bytes());
        tlv::write(&mut p, tag::TOTAL_MEMORY, &self.total_memory.to_be_bytes());
        tlv::write(&mut p, tag::SCP_I, &[self.scp_i]);
        let mut inner = tlv::encode(tag::AID, &AID);
        tlv::write(&mut inner, tag::PROPRIETARY, &p);
        tlv::encode(tag::FCI, &inner)
    }

    /// Decodes the FCI template.
    pub fn decode(bytes: &[u8]) -> Result<SelectInfo, DecodeError> {
        let (fci, rest) = tlv::parse_one(bytes)?;
        if fci.tag != tag::FCI || !rest.is_empty() {
            return Err(TlvError::Unexpected {
                tag: fci.tag,
                at: 0,
            }
            .into());
        }
        let outer = objects::fields(fci.value)?;
        let f = objects::fields(outer.require(tag::PROPRIETARY)?)?;
        let card_id: [u8; 16] = f
            .require(tag::CARD_ID)?
            .try_into()
            .map_err(|_| DecodeError::Field("card ID (16 bytes)"))?;
        let version = f.require(tag::APPLET_VERSION)?;
        let generation: [u8; 8] = f
            .require(tag::GENERATION)?
            .try_into()
            .map_err(|_| DecodeError::Field("generation (8 bytes)"))?;
        let algs: [u8; 2] = f
            .require(tag::ALGORITHMS)?
            .try_into()
            .map_err(|_| DecodeError::Field("algorithms (2 bytes)"))?;
        if version.len() != 2 {
            return Err(DecodeError::Field("applet version (2 bytes)"));
        }
        Ok(SelectInfo {
            card_id,
            applet_version: (version[0], version[1]),
            generation: u64::from_be_bytes(generation),
            max_command: be_u32(f.require(tag::MAX_COMMAND)?, "max command")?,
            max_response: be_u32(f.require(tag::MAX_RESPONSE)?, "max response")?,
            extended_length: one_byte(f.require(tag::EXTENDED_LENGTH)?, "flag")? != 0,
            algorithms: u16::from_be_bytes(algs),
            free_memory: be_u32(f.require(tag::FREE_MEMORY)?, "free memory")?,
            total_memory: be_u32(f.require(tag::TOTAL_MEMORY)?, "total memory")?,
            scp_i: one_byte(f.require(tag::SCP_I)?, "SCP i")?,
        })
    }
}
