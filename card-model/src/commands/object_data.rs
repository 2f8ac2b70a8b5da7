//! GET DATA answers: one object with its ACL, listings and "read all" records.

use alloc::string::ToString;
use alloc::vec::Vec;

use super::field::{be_u32, utf8};
use super::{tag, DecodeError, ObjectValue};
use crate::objects::{self, Acl, ObjectKind, ObjectRef};
use crate::tlv::{self, TlvError};

/// What GET DATA returns for one object: its value and its ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectData {
    /// The object's value.
    pub value: ObjectValue,
    /// The object's ACL.
    pub acl: Acl,
}

impl ObjectData {
    /// `53` value, `8C` ACL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = tlv::encode(tag::VALUE, &self.value.encode());
        tlv::write(&mut out, tag::ACL, self.acl.to_string().as_bytes());
        out
    }

    /// Decodes the response for an object of `kind`.
    pub fn decode(kind: ObjectKind, bytes: &[u8]) -> Result<ObjectData, DecodeError> {
        let f = objects::fields(bytes)?;
        f.only(&[tag::VALUE, tag::ACL], &[])?;
        Ok(ObjectData {
            value: ObjectValue::decode(kind, f.require(tag::VALUE)?)?,
            acl: Acl::parse(&utf8(f.require(tag::ACL)?, tag::ACL)?)?,
        })
    }
}

/// One object of a GET DATA "read all" answer: reference, value and ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// The object.
    pub object: ObjectRef,
    /// Its value and ACL.
    pub data: ObjectData,
}

/// Encodes a "read all" answer: one `E1` entry per object, holding the
/// reference TLV, then `53` value and `8C` ACL as in a single GET DATA.
pub fn encode_records(records: &[ObjectRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let mut inner = r.object.encode();
        inner.extend_from_slice(&r.data.encode());
        tlv::write(&mut out, tag::LIST_ENTRY, &inner);
    }
    out
}

/// Decodes a "read all" answer for objects of `kind`.
pub fn decode_records(kind: ObjectKind, bytes: &[u8]) -> Result<Vec<ObjectRecord>, DecodeError> {
    let f = objects::fields(bytes)?;
    f.only(&[tag::LIST_ENTRY], &[tag::LIST_ENTRY])?;
    f.all(tag::LIST_ENTRY)
        .map(|entry| {
            let (first, rest) = tlv::parse_one(entry)?;
            let object = ObjectRef::from_tlv(first.tag, first.value)?;
            if object.kind() != kind {
                return Err(DecodeError::from(TlvError::Unexpected {
                    tag: first.tag,
                    at: first.offset,
                }));
            }
            Ok(ObjectRecord {
                object,
                data: ObjectData::decode(kind, rest)?,
            })
        })
        .collect()
}

/// One entry of a listing: the object and the size of its stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The object.
    pub object: ObjectRef,
    /// Size of its stored value in bytes.
    pub size: u32,
}

/// Encodes a listing.
pub fn encode_list(entries: &[ListEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut inner = e.object.encode();
        tlv::write(&mut inner, tag::SIZE, &e.size.to_be_bytes());
        tlv::write(&mut out, tag::LIST_ENTRY, &inner);
    }
    out
}

/// Decodes a listing.
pub fn decode_list(bytes: &[u8]) -> Result<Vec<ListEntry>, DecodeError> {
    let f = objects::fields(bytes)?;
    f.only(&[tag::LIST_ENTRY], &[tag::LIST_ENTRY])?;
    f.all(tag::LIST_ENTRY)
        .map(|entry| {
            let items = tlv::parse_all(entry)?;
            match items.as_slice() {
                [obj, size] if size.tag == tag::SIZE => Ok(ListEntry {
                    object: ObjectRef::from_tlv(obj.tag, obj.value)?,
                    size: be_u32(size.value, "size")?,
                }),
                _ => Err(DecodeError::from(TlvError::Missing { tag: tag::SIZE })),
            }
        })
        .collect()
}
