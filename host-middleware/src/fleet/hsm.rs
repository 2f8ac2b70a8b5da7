//! Master keys in a PKCS#11 token (an HSM), through `cryptoki`.
//!
//! The master keys of key version `<kvn>` are AES secret-key objects labelled
//! `dmsc-master-<kvn>-enc`, `-mac` and `-dek` ([`KeyKind::master_label`],
//! two lower-case hex digits). [`HsmMasterKeys`] logs in to the token with the
//! user PIN, finds the three keys by label and computes every block of the
//! diversification KDF inside the token with `CKM_AES_CMAC` (`C_Sign` over
//! [`kdf_block_input`]): the master keys never leave it. What the host holds
//! is listed in docs/key-diversification.md, "In host memory".

use std::path::Path;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::fleet::diversify::{
    kdf_block_input, DiversifyError, KeyKind, MasterKeySource, StoreFault, StoreStep,
};

/// An open, logged-in session with the token holding one key version's master keys.
pub struct HsmMasterKeys {
    key_version: u8,
    key_len: usize,
    keys: [ObjectHandle; 3],
    session: Mutex<Session>,
    // Kept last: the session closes before the library is finalized.
    _pkcs11: Pkcs11,
}

impl std::fmt::Debug for HsmMasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HsmMasterKeys {{ key_version: {:02X}, key_len: {} }}",
            self.key_version, self.key_len
        )
    }
}

fn store(step: StoreStep) -> impl FnOnce(cryptoki::error::Error) -> DiversifyError {
    move |e| {
        DiversifyError::from(match e {
            cryptoki::error::Error::Pkcs11(rv, function) => StoreFault::Pkcs11 {
                step,
                function: function.to_string(),
                rv: rv.to_string(),
            },
            other => StoreFault::Library {
                step,
                cause: other.to_string(),
            },
        })
    }
}

impl HsmMasterKeys {
    /// Loads the PKCS#11 module `module`, opens the token labelled `token`,
    /// logs in as user with `pin` and finds the master keys of `key_version`.
    /// Errors name the module, the token or the missing label; a wrong PIN is
    /// reported as such (`CKR_PIN_INCORRECT`).
    pub fn open(
        module: &Path,
        token: &str,
        pin: &str,
        key_version: u8,
    ) -> Result<HsmMasterKeys, DiversifyError> {
        let pkcs11 = Pkcs11::new(module).map_err(store(StoreStep::LoadModule {
            module: module.to_path_buf(),
        }))?;
        pkcs11
            .initialize(CInitializeArgs::OsThreads)
            .map_err(store(StoreStep::Initialize {
                module: module.to_path_buf(),
            }))?;
        let slots = pkcs11
            .get_slots_with_token()
            .map_err(store(StoreStep::ListSlots))?;
        let mut found = None;
        let mut labels = Vec::new();
        for slot in slots {
            let info = pkcs11
                .get_token_info(slot)
                .map_err(store(StoreStep::TokenInfo))?;
            let label = info.label().trim_end().to_string();
            if label == token {
                found = Some(slot);
                break;
            }
            labels.push(label);
        }
        let slot = found.ok_or_else(|| {
            DiversifyError::from(StoreFault::NoToken {
                token: token.to_string(),
                available: labels,
            })
        })?;
        let session = pkcs11
            .open_ro_session(slot)
            .map_err(store(StoreStep::OpenSession {
                token: token.to_string(),
            }))?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.to_string())))
            .map_err(store(StoreStep::Login {
                token: token.to_string(),
            }))?;
        let mut keys = Vec::with_capacity(3);
        let mut key_len = None;
        for kind in KeyKind::ALL {
            let label = kind.master_label(key_version);
            let handles = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .map_err(store(StoreStep::FindKey {
                    label: label.clone(),
                    token: token.to_string(),
                }))?;
            let handle = match handles.as_slice() {
                [one] => *one,
                [] => {
                    return Err(DiversifyError::from(StoreFault::KeyNotFound {
                        label,
                        token: token.to_string(),
                    }))
                }
                _ => {
                    return Err(DiversifyError::from(StoreFault::DuplicateKey {
                        label,
                        token: token.to_string(),
                        count: handles.len(),
                    }))
                }
            };
            let len = session
                .get_attributes(handle, &[AttributeType::ValueLen])
                .map_err(store(StoreStep::ReadLength {
                    label: label.clone(),
                }))?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::ValueLen(l) => Some(usize::from(l)),
                    _ => None,
                })
                .ok_or_else(|| {
                    DiversifyError::from(StoreFault::NoKeyLength {
                        label: label.clone(),
                    })
                })?;
            if ![16, 24, 32].contains(&len) || key_len.is_some_and(|l| l != len) {
                return Err(DiversifyError::from(StoreFault::KeyLength { label, len }));
            }
            key_len = Some(len);
            keys.push(handle);
        }
        let (Some(key_len), [enc, mac, dek]) = (key_len, keys.as_slice()) else {
            return Err(DiversifyError::from(StoreFault::NotThreeKeys {
                token: token.to_string(),
            }));
        };
        Ok(HsmMasterKeys {
            key_version,
            key_len,
            keys: [*enc, *mac, *dek],
            session: Mutex::new(session),
            _pkcs11: pkcs11,
        })
    }
}

impl MasterKeySource for HsmMasterKeys {
    fn key_version(&self) -> u8 {
        self.key_version
    }

    fn key_len(&self) -> usize {
        self.key_len
    }

    fn derive(&self, kind: KeyKind, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, DiversifyError> {
        let key = match kind {
            KeyKind::Enc => self.keys[0],
            KeyKind::Mac => self.keys[1],
            KeyKind::Dek => self.keys[2],
        };
        let label = kind.master_label(self.key_version);
        let bits = u16::try_from(self.key_len * 8).map_err(|_| {
            DiversifyError::from(StoreFault::KdfLength {
                label: label.clone(),
                len: self.key_len,
            })
        })?;
        let session = self.session.lock().map_err(|_| {
            DiversifyError::from(StoreFault::Poisoned {
                label: label.clone(),
            })
        })?;
        let mut out = Zeroizing::new(Vec::with_capacity(self.key_len.div_ceil(16) * 16));
        for counter in 1..=self.key_len.div_ceil(16) {
            let input = kdf_block_input(kind.constant(), bits, counter as u8, context);
            let block = Zeroizing::new(session.sign(&Mechanism::AesCMac, key, &input).map_err(
                store(StoreStep::Cmac {
                    label: label.clone(),
                }),
            )?);
            if block.len() != 16 {
                return Err(DiversifyError::from(StoreFault::CmacLength {
                    label,
                    len: block.len(),
                }));
            }
            out.extend_from_slice(&block);
        }
        out.truncate(self.key_len);
        Ok(out)
    }
}
