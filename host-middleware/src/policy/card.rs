//! The policy on the card: the signed envelope in the `policy` object and
//! the enterprise public key in `approver:enterprise`, both under the ACL of
//! the authority that put them (`docs/policy.md`).
//!
//! The device trusts nothing it reads until the **card** has verified the
//! policy's signature with the key it holds (PSO VERIFY DIGITAL SIGNATURE
//! with approver `enterprise`).

use dmsc_card_model::commands::{ObjectValue, Request};
use dmsc_card_model::objects::{Acl, ObjectRef, Principal, Right};
use p256::ecdsa::SigningKey;

use super::format::Policy;
use super::signing::{
    fingerprint, point, policy_digest, policy_signed_bytes, SignedPolicy, ENTERPRISE_APPROVER,
};
use super::{KeyIssue, Malformation, MissingItem, PolicyError, SignatureIssue};
use crate::{CardCommands, HostError, Status};

fn enterprise_ref() -> ObjectRef {
    ObjectRef::Approver(ENTERPRISE_APPROVER.to_string())
}

/// What [`put_policy`] did.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    /// The policy's digest.
    pub digest: String,
    /// Whether the enterprise key was written (created or replaced).
    pub key_written: bool,
    /// SHA-256 fingerprint of the enterprise key.
    pub key_fingerprint: String,
    /// The size of the stored envelope.
    pub stored_bytes: usize,
}

/// Validates, signs and stores a policy (run in an authority session).
///
/// The enterprise key `approver:enterprise` is created from `key` when the
/// card has none; a different key on the card is an error unless
/// `replace_key`. Nothing is written when the policy does not validate.
pub fn put_policy(
    card: &mut impl CardCommands,
    text: &[u8],
    key: &SigningKey,
    replace_key: bool,
) -> Result<PutOutcome, PolicyError> {
    let utf8 = std::str::from_utf8(text).map_err(|_| PolicyError::NotUtf8)?;
    Policy::parse(utf8)?;
    let signed = SignedPolicy::sign(text, key);
    signed.verify_with(key.verifying_key())?;
    let our_point = point(key.verifying_key());

    let on_card = match card.read_object(&enterprise_ref()) {
        Ok(d) => match d.value {
            ObjectValue::Approver(p) => Some(p),
            _ => None,
        },
        Err(HostError::Card {
            status: Status::NotFound | Status::KeyReferenceNotFound,
            ..
        }) => None,
        Err(e) => return Err(e.into()),
    };
    let key_written = match on_card {
        Some(p) if p == our_point => false,
        Some(p) if !replace_key => {
            return Err(PolicyError::Key(KeyIssue::NotTheSigningKey {
                card: fingerprint(&p)[..16].to_string(),
                signer: fingerprint(&our_point)[..16].to_string(),
            }))
        }
        _ => {
            card.put_object(
                &enterprise_ref(),
                &ObjectValue::Approver(our_point.clone()),
                None,
            )?;
            true
        }
    };
    let envelope = signed.encode();
    card.put_object(
        &ObjectRef::Policy,
        &ObjectValue::Policy(envelope.clone()),
        None,
    )?;
    Ok(PutOutcome {
        digest: policy_digest(text),
        key_written,
        key_fingerprint: fingerprint(&our_point),
        stored_bytes: envelope.len(),
    })
}

/// A policy read from the card whose signature the card verified.
#[derive(Debug, Clone)]
pub struct VerifiedPolicy {
    /// The policy.
    pub policy: Policy,
    /// The policy file.
    pub text: String,
    /// Its digest (`sha256:…`).
    pub digest: String,
    /// SHA-256 fingerprint of the card's enterprise key.
    pub key_fingerprint: String,
    /// ACL of the `policy` object.
    pub policy_acl: String,
    /// ACL of `approver:enterprise`.
    pub key_acl: String,
    /// The card's ID (hex) and generation when read.
    pub card_id: String,
    /// The generation counter when read.
    pub generation: u64,
}

/// Refuses an ACL that lets the device or the user rewrite the object.
fn check_acl(what: &'static str, acl: &Acl) -> Result<(), PolicyError> {
    for right in [Right::Replace, Right::Delete] {
        for p in [Principal::Anyone, Principal::User] {
            if acl.names(right, &p) {
                return Err(PolicyError::BadSignature(SignatureIssue::Unprotected {
                    what,
                    acl: acl.clone(),
                    right,
                    principal: p,
                }));
            }
        }
    }
    Ok(())
}

/// Checks a signature with the card's enterprise key (PSO VERIFY DIGITAL SIGNATURE).
pub fn card_verifies(
    card: &mut impl CardCommands,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, PolicyError> {
    match card.request(&Request::VerifySignature {
        approver: ENTERPRISE_APPROVER.to_string(),
        data: data.to_vec(),
        signature: signature.to_vec(),
    }) {
        Ok(_) => Ok(true),
        Err(HostError::Card {
            status: Status::VerificationFailed,
            ..
        }) => Ok(false),
        Err(HostError::Card {
            status: Status::NotFound | Status::KeyReferenceNotFound,
            ..
        }) => Err(PolicyError::Missing(MissingItem::EnterpriseKey)),
        Err(e) => Err(e.into()),
    }
}

/// Reads the policy and has the card verify it with its enterprise key.
pub fn read_verified(card: &mut impl CardCommands) -> Result<VerifiedPolicy, PolicyError> {
    let info = card.select()?;
    let data = match card.read_object(&ObjectRef::Policy) {
        Ok(d) => d,
        // Without Get on the card, a missing object answers 6982 (docs/commands.md §2).
        Err(
            HostError::Card {
                status: Status::NotFound | Status::KeyReferenceNotFound,
                ..
            }
            | HostError::Card {
                status: Status::SecurityStatusNotSatisfied,
                ..
            },
        ) => return Err(PolicyError::Missing(MissingItem::ReadablePolicy)),
        Err(e) => return Err(e.into()),
    };
    let ObjectValue::Policy(bytes) = data.value else {
        return Err(PolicyError::Malformed(Malformation::PolicyKind));
    };
    let key = match card.read_object(&enterprise_ref()) {
        Ok(k) => k,
        Err(
            HostError::Card {
                status: Status::NotFound | Status::KeyReferenceNotFound,
                ..
            }
            | HostError::Card {
                status: Status::SecurityStatusNotSatisfied,
                ..
            },
        ) => return Err(PolicyError::Missing(MissingItem::ReadableEnterpriseKey)),
        Err(e) => return Err(e.into()),
    };
    let ObjectValue::Approver(key_point) = key.value else {
        return Err(PolicyError::Malformed(Malformation::EnterpriseKind));
    };
    check_acl("the policy", &data.acl)?;
    check_acl("the enterprise key", &key.acl)?;
    let signed = SignedPolicy::decode(&bytes)?;
    if !card_verifies(card, &policy_signed_bytes(&signed.text), &signed.signature)? {
        return Err(PolicyError::BadSignature(
            SignatureIssue::PolicyRefusedByCard,
        ));
    }
    let text = String::from_utf8(signed.text.clone()).map_err(|_| PolicyError::NotUtf8)?;
    let policy = Policy::parse(&text)?;
    Ok(VerifiedPolicy {
        policy,
        digest: policy_digest(&signed.text),
        text,
        key_fingerprint: fingerprint(&key_point),
        policy_acl: data.acl.to_string(),
        key_acl: key.acl.to_string(),
        card_id: hex::encode_upper(info.card_id),
        generation: info.generation,
    })
}
