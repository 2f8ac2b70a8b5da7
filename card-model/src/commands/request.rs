//! The command codec: every [`Request`] to and from one command APDU.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::consts::*;
use super::field::{be_u32, one_byte, utf8};
use super::pin::pin_pair;
use super::{ins, tag, Approval, DecodeError, ObjectValue, PackageId, Pin, PutKey, PUT_KEY_P2};
use crate::apdu::Command;
use crate::objects::{self, check_name, Acl, ObjectKind, ObjectRef};
use crate::tlv::{self, TlvError};

/// Every dmsc command as the card receives it (after secure messaging is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// SELECT by AID.
    Select {
        /// The application identifier.
        aid: Vec<u8>,
    },
    /// GET DATA for one object: value and ACL. `audit_from` applies to the audit log.
    ReadObject {
        /// The object.
        object: ObjectRef,
        /// First audit sequence number wanted (audit log only).
        audit_from: Option<u32>,
    },
    /// GET DATA: list objects of a named kind.
    ListObjects {
        /// The kind of objects.
        kind: ObjectKind,
    },
    /// PUT DATA: create (Add right) or replace (Replace right) an object's value,
    /// optionally with an ACL (creating defaults the ACL when absent).
    PutObject {
        /// The object.
        object: ObjectRef,
        /// The new value.
        value: ObjectValue,
        /// The ACL.
        acl: Option<Acl>,
    },
    /// PUT DATA with only an ACL: change the ACL (Replace right).
    SetAcl {
        /// The object.
        object: ObjectRef,
        /// The ACL.
        acl: Acl,
    },
    /// DELETE an object (Delete right).
    DeleteObject {
        /// The object.
        object: ObjectRef,
    },
    /// VERIFY; no PIN asks for the tries left.
    Verify {
        /// Key reference: [`PIN_REF_USER`](super::PIN_REF_USER) or [`PIN_REF_PUK`](super::PIN_REF_PUK).
        reference: u8,
        /// The PIN to verify; `None` asks for the tries left.
        pin: Option<Pin>,
    },
    /// CHANGE REFERENCE DATA of the user PIN.
    ChangePin {
        /// The current PIN.
        old: Pin,
        /// The new PIN.
        new: Pin,
    },
    /// RESET RETRY COUNTER of the user PIN with the PUK.
    ResetRetryCounter {
        /// The PUK.
        puk: Pin,
        /// The new PIN.
        new: Pin,
    },
    /// GET CHALLENGE of `len` random bytes.
    GetChallenge {
        /// Number of random bytes (1 to 256).
        len: usize,
    },
    /// INTERNAL AUTHENTICATE: sign a host challenge with the card's identity key.
    InternalAuthenticate {
        /// The host's challenge.
        challenge: Vec<u8>,
    },
    /// MANAGE SECURITY ENVIRONMENT: select the bootstrap key for the next checksum verification.
    SelectMacKey {
        /// The bootstrap key's ID.
        key_id: u8,
    },
    /// PERFORM SECURITY OPERATION: VERIFY CRYPTOGRAPHIC CHECKSUM.
    VerifyMac {
        /// The data covered.
        data: Vec<u8>,
        /// The MAC to verify.
        mac: Vec<u8>,
    },
    /// PERFORM SECURITY OPERATION: VERIFY DIGITAL SIGNATURE with an approver's key
    /// (ECDSA P-256 / SHA-256 over `data`; DER or raw signature).
    VerifySignature {
        /// The approver whose key verifies.
        approver: String,
        /// The data covered.
        data: Vec<u8>,
        /// The signature (DER or raw `r || s`).
        signature: Vec<u8>,
    },
    /// CHECK APPROVAL of a package.
    CheckApproval {
        /// The package.
        package: PackageId,
        /// The approvers' signatures.
        approvals: Vec<Approval>,
    },
    /// CONFIRM INSTALLED: move the device class's floor to an approved package's version.
    ConfirmInstalled {
        /// The package.
        package: PackageId,
    },
    /// GET RESPONSE.
    GetResponse {
        /// Ne: how many bytes to return.
        le: usize,
    },
    /// GET DATA: every object of a kind the caller may read, with value and
    /// ACL, in one response (MOs only).
    ReadAllObjects {
        /// The kind of objects.
        kind: ObjectKind,
    },
    /// GlobalPlatform PUT KEY of a whole SCP03 key set (ENC, MAC, DEK), the keys
    /// encrypted with the session authority's DEK: see [`PutKey`].
    PutKey(PutKey),
}

fn fields_of(data: &[u8]) -> Result<tlv::Fields<'_>, DecodeError> {
    Ok(objects::fields(data)?)
}

fn single_object(data: &[u8]) -> Result<ObjectRef, DecodeError> {
    Ok(ObjectRef::decode(data)?)
}

impl Request {
    /// Encodes the request as one command APDU (before chaining or secure messaging).
    pub fn to_command(&self) -> Command {
        let iso = |ins, p1, p2| Command::new(CLA_ISO, ins, p1, p2);
        let prop = |ins, p1, p2| Command::new(CLA_PROPRIETARY, ins, p1, p2);
        match self {
            Request::Select { aid } => iso(ins::SELECT, 0x04, 0x00)
                .with_data(aid.clone())
                .with_le(256),
            Request::ReadObject { object, audit_from } => {
                let mut data = object.encode();
                if let Some(from) = audit_from {
                    tlv::write(&mut data, tag::AUDIT_FROM, &from.to_be_bytes());
                }
                iso(ins::GET_DATA, P1P2_OBJECT.0, P1P2_OBJECT.1)
                    .with_data(data)
                    .with_le(65_536)
            }
            Request::ListObjects { kind } => iso(ins::GET_DATA, P1P2_LIST.0, P1P2_LIST.1)
                .with_data(tlv::encode(kind.tag() as u32, &[]))
                .with_le(65_536),
            Request::ReadAllObjects { kind } => {
                iso(ins::GET_DATA, P1P2_READ_ALL.0, P1P2_READ_ALL.1)
                    .with_data(tlv::encode(kind.tag() as u32, &[]))
                    .with_le(65_536)
            }
            Request::PutObject { object, value, acl } => {
                let mut data = object.encode();
                if let Some(acl) = acl {
                    tlv::write(&mut data, tag::ACL, acl.to_string().as_bytes());
                }
                tlv::write(&mut data, tag::VALUE, &value.encode());
                iso(ins::PUT_DATA, P1P2_OBJECT.0, P1P2_OBJECT.1).with_data(data)
            }
            Request::SetAcl { object, acl } => {
                let mut data = object.encode();
                tlv::write(&mut data, tag::ACL, acl.to_string().as_bytes());
                iso(ins::PUT_DATA, P1P2_OBJECT.0, P1P2_OBJECT.1).with_data(data)
            }
            Request::DeleteObject { object } => {
                prop(ins::DELETE, 0x00, 0x00).with_data(object.encode())
            }
            Request::Verify { reference, pin } => {
                let c = iso(ins::VERIFY, 0x00, *reference);
                match pin {
                    Some(p) => c.with_data(p.block().to_vec()),
                    None => c,
                }
            }
            Request::ChangePin { old, new } => iso(ins::CHANGE_REFERENCE_DATA, 0x00, PIN_REF_USER)
                .with_data([old.block().as_slice(), new.block().as_slice()].concat()),
            Request::ResetRetryCounter { puk, new } => {
                iso(ins::RESET_RETRY_COUNTER, 0x00, PIN_REF_USER)
                    .with_data([puk.block().as_slice(), new.block().as_slice()].concat())
            }
            Request::GetChallenge { len } => iso(ins::GET_CHALLENGE, 0, 0).with_le(*len),
            Request::InternalAuthenticate { challenge } => iso(ins::INTERNAL_AUTHENTICATE, 0, 0)
                .with_data(challenge.clone())
                .with_le(256),
            Request::SelectMacKey { key_id } => iso(
                ins::MANAGE_SECURITY_ENVIRONMENT,
                MSE_SET_CCT.0,
                MSE_SET_CCT.1,
            )
            .with_data(tlv::encode(tag::KEY_REF, &[*key_id])),
            Request::VerifyMac { data, mac } => {
                let mut body = tlv::encode(tag::PLAIN, data);
                tlv::write(&mut body, tag::CHECKSUM, mac);
                iso(
                    ins::PERFORM_SECURITY_OPERATION,
                    PSO_VERIFY_CHECKSUM.0,
                    PSO_VERIFY_CHECKSUM.1,
                )
                .with_data(body)
            }
            Request::VerifySignature {
                approver,
                data,
                signature,
            } => {
                let mut body = tlv::encode(tag::APPROVER, approver.as_bytes());
                tlv::write(&mut body, tag::PLAIN, data);
                tlv::write(&mut body, tag::SIGNATURE, signature);
                iso(
                    ins::PERFORM_SECURITY_OPERATION,
                    PSO_VERIFY_SIGNATURE.0,
                    PSO_VERIFY_SIGNATURE.1,
                )
                .with_data(body)
            }
            Request::CheckApproval { package, approvals } => {
                let mut data = Vec::new();
                package.write(&mut data);
                for a in approvals {
                    let mut inner = tlv::encode(tag::APPROVER, a.approver.as_bytes());
                    tlv::write(&mut inner, tag::SIGNATURE, &a.signature);
                    tlv::write(&mut data, tag::APPROVAL, &inner);
                }
                prop(ins::CHECK_APPROVAL, 0, 0).with_data(data).with_le(256)
            }
            Request::ConfirmInstalled { package } => {
                let mut data = Vec::new();
                package.write(&mut data);
                prop(ins::CONFIRM_INSTALLED, 0, 0).with_data(data)
            }
            Request::GetResponse { le } => iso(ins::GET_RESPONSE, 0, 0).with_le(*le),
            Request::PutKey(p) => prop(ins::PUT_KEY, p.replace_kvn, PUT_KEY_P2)
                .with_data(p.encode())
                .with_le(256),
        }
    }

    /// Decodes a (complete, unwrapped, unchained) command. GlobalPlatform commands
    /// (INITIALIZE UPDATE, EXTERNAL AUTHENTICATE) are handled by
    /// [`crate::scp03`] and decode as [`DecodeError::UnknownCommand`] here.
    pub fn from_command(cmd: &Command) -> Result<Request, DecodeError> {
        let cla = cmd.cla & !(CLA_SECURE_MESSAGING | crate::apdu::CLA_CHAINING);
        let p1p2 = (cmd.p1, cmd.p2);
        let data = cmd.data.as_slice();
        match (cla, cmd.ins) {
            (CLA_ISO, ins::SELECT) if p1p2 == (0x04, 0x00) => {
                Ok(Request::Select { aid: data.to_vec() })
            }
            (CLA_ISO, ins::GET_DATA) if p1p2 == P1P2_OBJECT => {
                let f = fields_of(data)?;
                let (first, rest) = f
                    .items
                    .split_first()
                    .ok_or(TlvError::Missing { tag: 0x80 })?;
                let object = ObjectRef::from_tlv(first.tag, first.value)?;
                let audit_from = match rest {
                    [] => None,
                    [t] if t.tag == tag::AUDIT_FROM && object == ObjectRef::AuditLog => {
                        Some(be_u32(t.value, "audit sequence")?)
                    }
                    [t, ..] => {
                        return Err(TlvError::Unexpected {
                            tag: t.tag,
                            at: t.offset,
                        }
                        .into())
                    }
                };
                Ok(Request::ReadObject { object, audit_from })
            }
            (CLA_ISO, ins::GET_DATA) if p1p2 == P1P2_LIST => {
                let f = fields_of(data)?;
                match f.items.as_slice() {
                    [t] if t.value.is_empty() => {
                        let kind = ObjectKind::from_tag(t.tag).filter(|k| k.is_named()).ok_or(
                            TlvError::Unexpected {
                                tag: t.tag,
                                at: t.offset,
                            },
                        )?;
                        Ok(Request::ListObjects { kind })
                    }
                    _ => Err(TlvError::InvalidValue { tag: 0 }.into()),
                }
            }
            (CLA_ISO, ins::GET_DATA) if p1p2 == P1P2_READ_ALL => {
                let f = fields_of(data)?;
                match f.items.as_slice() {
                    [t] if t.value.is_empty()
                        && ObjectKind::from_tag(t.tag) == Some(ObjectKind::Mo) =>
                    {
                        Ok(Request::ReadAllObjects {
                            kind: ObjectKind::Mo,
                        })
                    }
                    _ => Err(TlvError::InvalidValue { tag: 0 }.into()),
                }
            }
            (CLA_ISO, ins::PUT_DATA) if p1p2 == P1P2_OBJECT => {
                let f = fields_of(data)?;
                let (first, rest) = f
                    .items
                    .split_first()
                    .ok_or(TlvError::Missing { tag: 0x80 })?;
                let object = ObjectRef::from_tlv(first.tag, first.value)?;
                let rest = tlv::Fields {
                    items: rest.to_vec(),
                };
                rest.only(&[tag::ACL, tag::VALUE], &[])?;
                let acl = rest
                    .get(tag::ACL)
                    .map(|a| utf8(a, tag::ACL).and_then(|s| Ok(Acl::parse(&s)?)))
                    .transpose()?;
                match (rest.get(tag::VALUE), acl) {
                    (Some(v), acl) => Ok(Request::PutObject {
                        value: ObjectValue::decode(object.kind(), v)?,
                        object,
                        acl,
                    }),
                    (None, Some(acl)) => Ok(Request::SetAcl { object, acl }),
                    (None, None) => Err(TlvError::Missing { tag: tag::VALUE }.into()),
                }
            }
            (CLA_PROPRIETARY, ins::DELETE) if p1p2 == (0, 0) => Ok(Request::DeleteObject {
                object: single_object(data)?,
            }),
            (CLA_ISO, ins::VERIFY)
                if cmd.p1 == 0 && matches!(cmd.p2, PIN_REF_USER | PIN_REF_PUK) =>
            {
                let pin = if data.is_empty() {
                    None
                } else {
                    Some(Pin::from_block(data)?)
                };
                Ok(Request::Verify {
                    reference: cmd.p2,
                    pin,
                })
            }
            (CLA_ISO, ins::CHANGE_REFERENCE_DATA) if p1p2 == (0, PIN_REF_USER) => {
                let (old, new) = pin_pair(data)?;
                Ok(Request::ChangePin { old, new })
            }
            (CLA_ISO, ins::RESET_RETRY_COUNTER) if p1p2 == (0, PIN_REF_USER) => {
                let (puk, new) = pin_pair(data)?;
                Ok(Request::ResetRetryCounter { puk, new })
            }
            (CLA_ISO, ins::GET_CHALLENGE) if p1p2 == (0, 0) && data.is_empty() => {
                let len = cmd.le.ok_or(DecodeError::Length("challenge (Le)"))?;
                Ok(Request::GetChallenge { len })
            }
            (CLA_ISO, ins::INTERNAL_AUTHENTICATE) if p1p2 == (0, 0) => {
                if data.is_empty() || data.len() > 255 {
                    return Err(DecodeError::Length("challenge (1 to 255 bytes)"));
                }
                Ok(Request::InternalAuthenticate {
                    challenge: data.to_vec(),
                })
            }
            (CLA_ISO, ins::MANAGE_SECURITY_ENVIRONMENT)
                if p1p2 == MSE_SET_CCT || p1p2 == (MSE_SET_COMPUTATION, MSE_SET_CCT.1) =>
            {
                let f = fields_of(data)?;
                f.only(&[tag::KEY_REF], &[])?;
                Ok(Request::SelectMacKey {
                    key_id: one_byte(f.require(tag::KEY_REF)?, "key reference")?,
                })
            }
            (CLA_ISO, ins::PERFORM_SECURITY_OPERATION) if p1p2 == PSO_VERIFY_CHECKSUM => {
                let f = fields_of(data)?;
                f.only(&[tag::PLAIN, tag::CHECKSUM], &[])?;
                Ok(Request::VerifyMac {
                    data: f.require(tag::PLAIN)?.to_vec(),
                    mac: f.require(tag::CHECKSUM)?.to_vec(),
                })
            }
            (CLA_ISO, ins::PERFORM_SECURITY_OPERATION) if p1p2 == PSO_VERIFY_SIGNATURE => {
                let f = fields_of(data)?;
                f.only(&[tag::APPROVER, tag::PLAIN, tag::SIGNATURE], &[])?;
                let approver = utf8(f.require(tag::APPROVER)?, tag::APPROVER)?;
                check_name(&approver)?;
                Ok(Request::VerifySignature {
                    approver,
                    data: f.require(tag::PLAIN)?.to_vec(),
                    signature: f.require(tag::SIGNATURE)?.to_vec(),
                })
            }
            (CLA_PROPRIETARY, ins::CHECK_APPROVAL) if p1p2 == (0, 0) => {
                let f = fields_of(data)?;
                f.only(
                    &[tag::DIGEST, tag::VERSION, tag::DEVICE_CLASS, tag::APPROVAL],
                    &[tag::APPROVAL],
                )?;
                let package = PackageId::read(&f)?;
                let mut approvals = Vec::new();
                for a in f.all(tag::APPROVAL) {
                    let af = fields_of(a)?;
                    af.only(&[tag::APPROVER, tag::SIGNATURE], &[])?;
                    let approver = utf8(af.require(tag::APPROVER)?, tag::APPROVER)?;
                    check_name(&approver)?;
                    approvals.push(Approval {
                        approver,
                        signature: af.require(tag::SIGNATURE)?.to_vec(),
                    });
                }
                Ok(Request::CheckApproval { package, approvals })
            }
            (CLA_PROPRIETARY, ins::CONFIRM_INSTALLED) if p1p2 == (0, 0) => {
                let f = fields_of(data)?;
                f.only(&[tag::DIGEST, tag::VERSION, tag::DEVICE_CLASS], &[])?;
                Ok(Request::ConfirmInstalled {
                    package: PackageId::read(&f)?,
                })
            }
            (CLA_PROPRIETARY, ins::PUT_KEY) if cmd.p2 == PUT_KEY_P2 && cmd.p1 != 0xFF => {
                Ok(Request::PutKey(PutKey::decode(cmd.p1, data)?))
            }
            (CLA_ISO, ins::GET_RESPONSE) if p1p2 == (0, 0) && data.is_empty() => {
                Ok(Request::GetResponse {
                    le: cmd.le.unwrap_or(256),
                })
            }
            _ => Err(DecodeError::UnknownCommand),
        }
    }

    /// Whether an APDU trace must hide this command's data (PINs, keys).
    pub fn carries_secret(&self) -> bool {
        matches!(
            self,
            Request::Verify { pin: Some(_), .. }
                | Request::ChangePin { .. }
                | Request::ResetRetryCounter { .. }
                | Request::PutObject {
                    value: ObjectValue::BootstrapKey(_),
                    ..
                }
                | Request::PutKey(_)
        )
    }
}

/// Whether a raw command APDU's data must be redacted in traces: PIN commands
/// (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER) on any logical channel
/// and in any class, file updates (UPDATE BINARY / UPDATE RECORD, which write
/// a UICC's bootstrap keys), PUT DATA of a bootstrap key, SCP03 PUT KEY.
/// Decides from the header and the first object reference only, so it also
/// works on malformed commands.
pub fn command_carries_secret(cmd: &Command) -> bool {
    // ISO 7816-4 §5.4.1: b8 set = proprietary class; the other bits code the
    // logical channel, secure messaging and chaining, none of which changes
    // whether the data is a secret.
    let proprietary = cmd.cla & 0x80 != 0;
    match (proprietary, cmd.ins) {
        (_, ins::VERIFY | ins::CHANGE_REFERENCE_DATA | ins::RESET_RETRY_COUNTER) => {
            !cmd.data.is_empty()
        }
        (false, UPDATE_BINARY | UPDATE_RECORD) => !cmd.data.is_empty(),
        (true, ins::PUT_KEY) => true,
        (false, ins::PUT_DATA) => {
            // Secure messaging hides the content anyway; without it, check the object kind.
            cmd.cla & CLA_SECURE_MESSAGING != 0
                || cmd.data.first() == Some(&ObjectKind::BootstrapKey.tag())
                || cmd.is_chained()
        }
        _ => false,
    }
}

/// UPDATE BINARY (ISO 7816-4 §11.2.5).
const UPDATE_BINARY: u8 = 0xD6;
/// UPDATE RECORD (ISO 7816-4 §11.3.5).
const UPDATE_RECORD: u8 = 0xDC;
