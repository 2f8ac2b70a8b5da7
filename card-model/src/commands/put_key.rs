//! GlobalPlatform PUT KEY for a whole SCP03 key set (Card Specification v2.3
//! §11.8, Amendment D §7.2): the command data, its encryption with the DEK and
//! the key check values, shared by host and card.
//!
//! ```text
//! 80 D8 P1 81 Lc  new-KVN
//!                 88 L 10 <ENC encrypted with the DEK> 03 <KCV of ENC>
//!                 88 L 10 <MAC encrypted with the DEK> 03 <KCV of MAC>
//!                 88 L 10 <DEK encrypted with the DEK> 03 <KCV of DEK>
//!                 [DB len <authority name>]          (dmsc: only when adding)
//! ```
//!
//! P1 is the key version to replace, `00` to add a key set; P2 `81` says key
//! identifier 1 and "several keys follow". The card answers the new key
//! version and the three key check values.

use alloc::string::String;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use super::DecodeError;
use crate::objects::check_name;
use crate::scp03::{dek_decrypt, dek_encrypt, key_check_value, Scp03Error, StaticKeys};

/// P2 of PUT KEY: key identifier 1, several keys in the data field.
pub const PUT_KEY_P2: u8 = 0x81;
/// GlobalPlatform key type of an AES key.
pub const KEY_TYPE_AES: u8 = 0x88;
/// Tag of the authority name that names a new key set (dmsc extension).
pub const TAG_AUTHORITY_NAME: u8 = 0xDB;

/// One key of a PUT KEY: its length, the key encrypted with the DEK, and its
/// key check value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlock {
    /// Length of the plain key in bytes (16, 24 or 32).
    pub key_length: u8,
    /// The key, zero-padded to whole AES blocks, encrypted with AES-CBC under
    /// the DEK (zero ICV).
    pub encrypted: Vec<u8>,
    /// The first three bytes of AES over 16 bytes `01` under the plain key.
    pub kcv: [u8; 3],
}

/// A PUT KEY request as the card receives it (after secure messaging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutKey {
    /// P1: the key version replaced (rotation), or 0 to add a key set.
    pub replace_kvn: u8,
    /// The key version of the new key set (01 to FE).
    pub new_kvn: u8,
    /// ENC, MAC and DEK.
    pub keys: [KeyBlock; 3],
    /// The authority the new key set belongs to (required when adding; when
    /// rotating, absent or equal to the current name).
    pub name: Option<String>,
}

/// The card's answer: the new key version and the three key check values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutKeyResponse {
    /// The new key set's key version.
    pub key_version: u8,
    /// Key check values of ENC, MAC and DEK.
    pub kcvs: [[u8; 3]; 3],
}

impl PutKeyResponse {
    /// `KVN ‖ KCV(ENC) ‖ KCV(MAC) ‖ KCV(DEK)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = alloc::vec![self.key_version];
        for k in &self.kcvs {
            out.extend_from_slice(k);
        }
        out
    }

    /// Decodes the 10-byte answer.
    pub fn decode(bytes: &[u8]) -> Result<PutKeyResponse, DecodeError> {
        if bytes.len() != 10 {
            return Err(DecodeError::Field("PUT KEY response (10 bytes)"));
        }
        let mut kcvs = [[0u8; 3]; 3];
        for (i, k) in kcvs.iter_mut().enumerate() {
            k.copy_from_slice(&bytes[1 + 3 * i..4 + 3 * i]);
        }
        Ok(PutKeyResponse {
            key_version: bytes[0],
            kcvs,
        })
    }
}

fn padded_len(key_length: usize) -> usize {
    key_length.div_ceil(16) * 16
}

impl PutKey {
    /// Builds the request on the host side: encrypts the new keys with `dek`
    /// (the static DEK of the authority whose session sends the command).
    pub fn new(
        replace_kvn: u8,
        new_kvn: u8,
        keys: &StaticKeys,
        dek: &[u8],
        name: Option<String>,
    ) -> Result<PutKey, Scp03Error> {
        let block = |key: &[u8]| -> Result<KeyBlock, Scp03Error> {
            let mut plain = Zeroizing::new(key.to_vec());
            plain.resize(padded_len(key.len()), 0);
            Ok(KeyBlock {
                key_length: key.len() as u8,
                encrypted: dek_encrypt(dek, &plain)?,
                kcv: key_check_value(key)?,
            })
        };
        Ok(PutKey {
            replace_kvn,
            new_kvn,
            keys: [block(keys.enc())?, block(keys.mac())?, block(keys.dek())?],
            name,
        })
    }

    /// The command data field.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = alloc::vec![self.new_kvn];
        for k in &self.keys {
            out.push(KEY_TYPE_AES);
            out.push((1 + k.encrypted.len()) as u8);
            out.push(k.key_length);
            out.extend_from_slice(&k.encrypted);
            out.push(3);
            out.extend_from_slice(&k.kcv);
        }
        if let Some(name) = &self.name {
            out.push(TAG_AUTHORITY_NAME);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        out
    }

    /// Decodes the data field of a PUT KEY with P1 = `replace_kvn`.
    pub fn decode(replace_kvn: u8, data: &[u8]) -> Result<PutKey, DecodeError> {
        let bad = DecodeError::Field("PUT KEY data (KVN, three AES key blocks, optional DB name)");
        let (&new_kvn, mut rest) = data.split_first().ok_or(bad.clone())?;
        if new_kvn == 0 || new_kvn == 0xFF {
            return Err(DecodeError::Field("new key version (01 to FE)"));
        }
        let mut blocks = Vec::new();
        for _ in 0..3 {
            let [ty, len, key_length, tail @ ..] = rest else {
                return Err(bad);
            };
            if *ty != KEY_TYPE_AES {
                return Err(DecodeError::Field("key type (88, AES)"));
            }
            if !matches!(key_length, 16 | 24 | 32) {
                return Err(DecodeError::Field("AES key length (16, 24 or 32)"));
            }
            let enc_len = padded_len(*key_length as usize);
            if *len as usize != 1 + enc_len || tail.len() < enc_len + 4 {
                return Err(bad);
            }
            let (encrypted, tail) = tail.split_at(enc_len);
            let [3, a, b, c, tail @ ..] = tail else {
                return Err(DecodeError::Field("key check value (3 bytes)"));
            };
            blocks.push(KeyBlock {
                key_length: *key_length,
                encrypted: encrypted.to_vec(),
                kcv: [*a, *b, *c],
            });
            rest = tail;
        }
        if blocks.iter().any(|b| b.key_length != blocks[0].key_length) {
            return Err(DecodeError::Field("key lengths (ENC, MAC, DEK alike)"));
        }
        let name = match rest {
            [] => None,
            [TAG_AUTHORITY_NAME, len, name @ ..] if *len as usize == name.len() => {
                let name =
                    core::str::from_utf8(name).map_err(|_| DecodeError::Field("authority name"))?;
                check_name(name)?;
                if name == "user" {
                    return Err(DecodeError::Field("authority name"));
                }
                Some(String::from(name))
            }
            _ => return Err(bad),
        };
        let keys: [KeyBlock; 3] = blocks.try_into().map_err(|_| bad)?;
        Ok(PutKey {
            replace_kvn,
            new_kvn,
            keys,
            name,
        })
    }

    /// Card side: decrypts the keys with `dek` and checks every key check
    /// value. Returns ENC, MAC and DEK.
    pub fn decrypt(&self, dek: &[u8]) -> Result<[Zeroizing<Vec<u8>>; 3], DecodeError> {
        let one = |b: &KeyBlock| -> Result<Zeroizing<Vec<u8>>, DecodeError> {
            let mut plain =
                dek_decrypt(dek, &b.encrypted).map_err(|_| DecodeError::Field("encrypted key"))?;
            plain.truncate(b.key_length as usize);
            let kcv = key_check_value(&plain).map_err(|_| DecodeError::Field("key"))?;
            if kcv != b.kcv {
                return Err(DecodeError::Field("key check value"));
            }
            Ok(plain)
        };
        Ok([
            one(&self.keys[0])?,
            one(&self.keys[1])?,
            one(&self.keys[2])?,
        ])
    }

    /// The key check values the card will answer.
    pub fn kcvs(&self) -> [[u8; 3]; 3] {
        [self.keys[0].kcv, self.keys[1].kcv, self.keys[2].kcv]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Request;

    #[test]
    fn put_key_round_trips_and_decrypts() {
        let dek = [0x40u8; 16];
        for len in [16usize, 24, 32] {
            let keys = StaticKeys::new(
                &alloc::vec![1; len],
                &alloc::vec![2; len],
                &alloc::vec![3; len],
            )
            .unwrap();
            let p = PutKey::new(0, 0x32, &keys, &dek, Some("ServerC".into())).unwrap();
            let req = Request::PutKey(p.clone());
            let cmd = req.to_command();
            assert_eq!((cmd.cla, cmd.ins, cmd.p1, cmd.p2), (0x80, 0xD8, 0, 0x81));
            assert_eq!(Request::from_command(&cmd).unwrap(), req);
            assert!(req.carries_secret());
            assert!(crate::commands::command_carries_secret(&cmd));
            let plain = p.decrypt(&dek).unwrap();
            assert_eq!(plain[0].as_slice(), alloc::vec![1; len].as_slice());
            assert_eq!(plain[2].as_slice(), alloc::vec![3; len].as_slice());
            // The wrong DEK gives a key whose check value does not match.
            assert!(p.decrypt(&[0x41; 16]).is_err());
        }
    }

    #[test]
    fn malformed_put_key_is_refused() {
        let keys = StaticKeys::new(&[1; 16], &[2; 16], &[3; 16]).unwrap();
        let p = PutKey::new(0x30, 0x30, &keys, &[9; 16], None).unwrap();
        let data = p.encode();
        assert_eq!(PutKey::decode(0x30, &data).unwrap(), p);
        assert!(PutKey::decode(0x30, &data[..data.len() - 1]).is_err());
        let mut extra = data.clone();
        extra.push(0);
        assert!(PutKey::decode(0x30, &extra).is_err());
        let mut bad_type = data.clone();
        bad_type[1] = 0x80;
        assert!(PutKey::decode(0x30, &bad_type).is_err());
        let mut zero_kvn = data;
        zero_kvn[0] = 0;
        assert!(PutKey::decode(0x30, &zero_kvn).is_err());
        let r = PutKeyResponse {
            key_version: 0x31,
            kcvs: [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        };
        assert_eq!(PutKeyResponse::decode(&r.encode()).unwrap(), r);
    }
}
