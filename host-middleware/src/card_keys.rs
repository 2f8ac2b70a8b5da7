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
    /// The key store (e.g. a PKCS#11 token) failed; [`StoreFault`] says how.
    #[error("{0}")]
    Store(#[source] Box<StoreFault>),
}

/// How a key store (a PKCS#11 token) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFault {
    /// A PKCS#11 function returned an error code.
    #[error("{step}: {function}: PKCS11 error: {rv}")]
    Pkcs11 {
        /// What was being done.
        step: StoreStep,
        /// The PKCS#11 function (`C_Login`, …).
        function: String,
        /// Its return value (`CKR_PIN_INCORRECT`, …).
        rv: String,
    },
    /// The PKCS#11 library failed without a return value (loading the module,
    /// a missing function, a conversion); `cause` is the library's rendering
    /// of its error, which is neither `Clone` nor `Eq`.
    #[error("{step}: {cause}")]
    Library {
        /// What was being done.
        step: StoreStep,
        /// The library's error, rendered.
        cause: String,
    },
    /// No token has the label asked for.
    #[error("finding the token '{token}': no such token (tokens: {})", .available.join(", "))]
    NoToken {
        /// The label asked for.
        token: String,
        /// The labels of the tokens present.
        available: Vec<String>,
    },
    /// The token holds no AES secret key with the label.
    #[error("finding the key '{label}' in token '{token}': no AES secret key with this label")]
    KeyNotFound {
        /// The key's label.
        label: String,
        /// The token's label.
        token: String,
    },
    /// Several keys carry the label.
    #[error(
        "finding the key '{label}' in token '{token}': {count} keys carry this label; keep one"
    )]
    DuplicateKey {
        /// The key's label.
        label: String,
        /// The token's label.
        token: String,
        /// How many keys carry it.
        count: usize,
    },
    /// The token does not report the key's length.
    #[error("reading the length of '{label}': the token does not report CKA_VALUE_LEN")]
    NoKeyLength {
        /// The key's label.
        label: String,
    },
    /// A master key of a length other than 16, 24 or 32 bytes, or of
    /// another length than the other master keys.
    #[error(
        "checking the key '{label}': {len} bytes; the three master keys must be AES keys of \
         one length (16, 24 or 32 bytes)"
    )]
    KeyLength {
        /// The key's label.
        label: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The token did not yield the three master keys.
    #[error("finding the master keys in token '{token}': not three keys")]
    NotThreeKeys {
        /// The token's label.
        token: String,
    },
    /// The key length does not fit the KDF's 16-bit length field.
    #[error("{label}: a key of {len} bytes is too long for the key derivation")]
    KdfLength {
        /// The key's label.
        label: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A panic while the token session was in use left it unusable.
    #[error("{label}: the token session was poisoned by a panic")]
    Poisoned {
        /// The key's label.
        label: String,
    },
    /// CKM_AES_CMAC returned a block of another length than 16 bytes.
    #[error("CKM_AES_CMAC with '{label}': {len} bytes instead of 16")]
    CmacLength {
        /// The key's label.
        label: String,
        /// The length returned.
        len: usize,
    },
}

impl From<StoreFault> for DiversifyError {
    fn from(fault: StoreFault) -> DiversifyError {
        DiversifyError::Store(Box::new(fault))
    }
}

/// What was being done with a key store when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStep {
    /// Loading the PKCS#11 module.
    LoadModule {
        /// The module's path.
        module: std::path::PathBuf,
    },
    /// Initializing the module.
    Initialize {
        /// The module's path.
        module: std::path::PathBuf,
    },
    /// Listing the slots that hold a token.
    ListSlots,
    /// Reading a token's information.
    TokenInfo,
    /// Opening a session with the token.
    OpenSession {
        /// The token's label.
        token: String,
    },
    /// Logging in with the user PIN.
    Login {
        /// The token's label.
        token: String,
    },
    /// Finding a key by its label.
    FindKey {
        /// The key's label.
        label: String,
        /// The token's label.
        token: String,
    },
    /// Reading a key's length.
    ReadLength {
        /// The key's label.
        label: String,
    },
    /// Computing a CMAC with a key.
    Cmac {
        /// The key's label.
        label: String,
    },
}

impl fmt::Display for StoreStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreStep::LoadModule { module } => {
                write!(f, "loading the PKCS#11 module {}", module.display())
            }
            StoreStep::Initialize { module } => write!(f, "initializing {}", module.display()),
            StoreStep::ListSlots => f.write_str("listing the token slots"),
            StoreStep::TokenInfo => f.write_str("reading a token's information"),
            StoreStep::OpenSession { token } => {
                write!(f, "opening a session with token '{token}'")
            }
            StoreStep::Login { token } => {
                write!(f, "logging in to token '{token}' with the user PIN")
            }
            StoreStep::FindKey { label, token } => {
                write!(f, "finding the key '{label}' in token '{token}'")
            }
            StoreStep::ReadLength { label } => write!(f, "reading the length of '{label}'"),
            StoreStep::Cmac { label } => write!(f, "CKM_AES_CMAC with '{label}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// The store's typed causes read as the messages did, and are the source.
    #[test]
    fn store_faults_read_well_and_are_the_source() {
        let e = DiversifyError::from(StoreFault::Pkcs11 {
            step: StoreStep::Login {
                token: "fleet".into(),
            },
            function: "Login".into(),
            rv: "CKR_PIN_INCORRECT".into(),
        });
        assert_eq!(
            e.to_string(),
            "logging in to token 'fleet' with the user PIN: Login: PKCS11 error: \
             CKR_PIN_INCORRECT"
        );
        assert!(e.source().is_some());
        assert_eq!(
            StoreFault::NoToken {
                token: "x".into(),
                available: vec!["a".into(), "b".into()],
            }
            .to_string(),
            "finding the token 'x': no such token (tokens: a, b)"
        );
        assert_eq!(
            StoreFault::Library {
                step: StoreStep::LoadModule {
                    module: "/m.so".into()
                },
                cause: "libloading error (x)".into(),
            }
            .to_string(),
            "loading the PKCS#11 module /m.so: libloading error (x)"
        );
    }
}
