//! The card's cryptographic checks: bootstrap MACs and ECDSA P-256 signatures.

use alloc::vec::Vec;

use dmsc_card_model::objects::MacAlgorithm;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use subtle::ConstantTimeEq;

/// Verifies a full-length MAC over `data`. Returns `false` for a key the
/// algorithm cannot use, and for a MAC of the wrong length.
pub fn verify_mac(algorithm: MacAlgorithm, key: &[u8], data: &[u8], mac: &[u8]) -> bool {
    if mac.len() != algorithm.mac_len() || !algorithm.key_len_ok(key.len()) {
        return false;
    }
    let expected: Option<Vec<u8>> = match algorithm {
        MacAlgorithm::AesCmac => match key.len() {
            16 => cmac_tag::<cmac::Cmac<aes::Aes128>>(key, data),
            32 => cmac_tag::<cmac::Cmac<aes::Aes256>>(key, data),
            _ => None,
        },
        MacAlgorithm::HmacSha256 => Hmac::<sha2::Sha256>::new_from_slice(key)
            .ok()
            .map(|m| m.chain_update(data).finalize().into_bytes().to_vec()),
        MacAlgorithm::HmacSha1 => Hmac::<sha1::Sha1>::new_from_slice(key)
            .ok()
            .map(|m| m.chain_update(data).finalize().into_bytes().to_vec()),
    };
    expected.is_some_and(|e| bool::from(e.as_slice().ct_eq(mac)))
}

fn cmac_tag<C: cmac::Mac + cmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut m = <C as cmac::digest::KeyInit>::new_from_slice(key).ok()?;
    cmac::Mac::update(&mut m, data);
    Some(m.finalize().into_bytes().to_vec())
}

/// Verifies an ECDSA P-256 / SHA-256 signature, DER or raw `r || s` (64 bytes),
/// with a public key given as a SEC1 point.
pub fn verify_ecdsa(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_sec1_bytes(public_key) else {
        return false;
    };
    let sig = if signature.len() == 64 {
        Signature::from_slice(signature)
    } else {
        Signature::from_der(signature)
    };
    match sig {
        Ok(sig) => key.verify(message, &sig).is_ok(),
        Err(_) => false,
    }
}

/// Signs `message` (ECDSA P-256 / SHA-256, RFC 6979 nonces), raw `r || s`.
pub fn sign(secret: &[u8; 32], message: &[u8]) -> Option<Vec<u8>> {
    let key = SigningKey::from_bytes(secret.into()).ok()?;
    let sig: Signature = key.sign(message);
    Some(sig.to_bytes().to_vec())
}

/// The uncompressed SEC1 public point of a secret scalar.
pub fn public_point(secret: &[u8; 32]) -> Option<Vec<u8>> {
    let key = SigningKey::from_bytes(secret.into()).ok()?;
    Some(
        key.verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
    )
}
