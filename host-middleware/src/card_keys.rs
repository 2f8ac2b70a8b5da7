//! The vocabulary of per-card key derivation ([`crate::fleet::diversify`]):
//! the three static keys of a card's key set, their derivation constants,
//! and why a card's keys could not be derived. A leaf module: the crate's
//! error type ([`crate::error::HostError::KeyDerivation`]) names these
//! without depending on the derivation itself.

use std::fmt;

use dmsc_card_model::scp03::Scp03Error;

/// The length of a card ID (the KDF context), in bytes.
pub const CARD_ID_LEN: usize = 16;

/// Derivation constant of the card's static ENC key.
pub const DERIVE_CARD_ENC: u8 = 0x41;
/// Derivation constant of the card's static MAC key.
pub const DERIVE_CARD_MAC: u8 = 0x42;
/// Derivation constant of the card's static DEK.
pub const DERIVE_CARD_DEK: u8 = 0x43;

/// One of the three static keys of a key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Key-ENC.
    Enc,
    /// Key-MAC.
    Mac,
    /// Key-DEK.
    Dek,
}

impl KeyKind {
    /// ENC, MAC, DEK in that order.
    pub const ALL: [KeyKind; 3] = [KeyKind::Enc, KeyKind::Mac, KeyKind::Dek];

    /// The KDF derivation constant of this key.
    pub fn constant(self) -> u8 {
        match self {
            KeyKind::Enc => DERIVE_CARD_ENC,
            KeyKind::Mac => DERIVE_CARD_MAC,
            KeyKind::Dek => DERIVE_CARD_DEK,
        }
    }

    /// `enc`, `mac` or `dek` (the suffix of the key's label in a token).
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Enc => "enc",
            KeyKind::Mac => "mac",
            KeyKind::Dek => "dek",
        }
    }

    /// The label of the master key in a PKCS#11 token:
    /// `dmsc-master-<kvn, two hex digits>-<enc|mac|dek>`.
    pub fn master_label(self, key_version: u8) -> String {
        format!("dmsc-master-{key_version:02x}-{}", self.name())
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a card's keys could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiversifyError {
    /// The card ID is not 16 bytes.
    #[error("a card ID is {CARD_ID_LEN} bytes, not {0}")]
    CardIdLength(usize),
    /// A master key or a derived key was refused by the SCP03 primitives.
    #[error("{kind} master key: {source}")]
    Key {
        /// Which key.
        kind: KeyKind,
        /// Why.
        #[source]
        source: Scp03Error,
    },
    /// The derived keys do not form a key set.
    #[error("derived keys: {0}")]
    KeySet(#[source] Scp03Error),
    /// The key store (e.g. a PKCS#11 token) failed.
    #[error("{what}: {detail}")]
    Store {
        /// What was being done (names the key label where there is one).
        what: String,
        /// Why.
        detail: String,
    },
}
