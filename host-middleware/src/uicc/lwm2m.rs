//! The LwM2M bootstrap file a UICC carries (EF(LwM2M_Bootstrap), often FID
//! `6432`; OMA-TS-LightweightM2M_Core appendix G, "Storage of LwM2M Bootstrap
//! Information on the Smartcard"), and the OMA-TLV encoding of its objects
//! (OMA-TS-LightweightM2M_Core, TLV content format).
//!
//! Layout, big-endian:
//!
//! ```text
//! number of objects (2) | size of what follows (2) |
//!   { object ID (2) | version (1; 00 = none) | length (2) | OMA-TLV object instances } ... |
//! FF padding to the end of the file
//! ```
//!
//! Resource values of the Security (0) and Server (1) objects are typed from
//! the LwM2M registry; other objects' resources are opaque bytes.

use serde::{Deserialize, Serialize};

/// Largest EF(LwM2M_Bootstrap) the appendix allows (32 KiB).
pub const MAX_FILE_SIZE: usize = 32 * 1024;

/// Why a bootstrap file or a TLV was refused; every variant names the offset
/// in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lwm2mError {
    /// The file ends inside a field.
    #[error("LwM2M bootstrap: truncated at offset {offset}: {shortfall}")]
    Truncated {
        /// Offset where the missing bytes should start.
        offset: usize,
        /// What is missing.
        shortfall: Shortfall,
    },
    /// A structural error.
    #[error("LwM2M bootstrap: at offset {offset}: {problem}")]
    Invalid {
        /// Offset of the offending field.
        offset: usize,
        /// What is wrong.
        problem: LayoutProblem,
    },
    /// A resource value that does not fit its registry type.
    #[error("LwM2M bootstrap: /{object}/{instance}/{resource} at offset {offset}: {problem}")]
    BadValue {
        /// Object ID.
        object: u16,
        /// Instance ID.
        instance: u16,
        /// Resource ID.
        resource: u16,
        /// Offset of the value.
        offset: usize,
        /// What is wrong.
        problem: ValueProblem,
    },
    /// A description (JSON) that cannot be encoded.
    #[error("LwM2M bootstrap: cannot encode {path}: {problem}")]
    Encode {
        /// The object/instance/resource path.
        path: String,
        /// What is wrong.
        problem: EncodeProblem,
    },
}

/// What a truncated bootstrap file lacks ([`Lwm2mError::Truncated`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// A field is cut short.
    Field {
        /// The field being read (e.g. `object length`, `value`).
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the file.
        left: usize,
        /// The file offset of the OMA-TLV element the field belongs to, if any.
        element: Option<usize>,
    },
    /// The header declares more bytes of objects than the file holds.
    Declared {
        /// The declared size.
        size: usize,
        /// The bytes after the header.
        available: usize,
    },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::Field {
                field,
                needed,
                left,
                element,
            } => {
                if let Some(at) = element {
                    write!(f, "OMA-TLV element at offset {at}: ")?;
                }
                write!(f, "{field}: {needed} bytes needed, {left} left")
            }
            Shortfall::Declared { size, available } => write!(
                f,
                "the header declares {size} bytes of objects, the file has {available}"
            ),
        }
    }
}

/// What is wrong with the layout of a bootstrap file ([`Lwm2mError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutProblem {
    /// The header's size goes beyond [`MAX_FILE_SIZE`].
    #[error("the header declares {size} bytes of objects, more than the 32 KiB file allows")]
    SizeTooLarge {
        /// The size the header declares.
        size: usize,
    },
    /// The objects do not end where the header's size says.
    #[error("{count} objects end at offset {end}, the header's size says {declared_end}")]
    SizeMismatch {
        /// The number of objects the header declares.
        count: u16,
        /// Where the objects end.
        end: usize,
        /// Where the header's size says they end.
        declared_end: usize,
    },
    /// A byte other than `FF` after the objects.
    #[error("byte {byte:02X} after the objects (only FF padding may follow)")]
    NotPadding {
        /// The byte found.
        byte: u8,
    },
    /// An object's TLV that is not an object instance.
    #[error("object {object}: expected an object instance TLV, found kind {kind}")]
    NotAnObjectInstance {
        /// Object ID.
        object: u16,
        /// The TLV kind found (the type byte's b8-b7).
        kind: u8,
    },
    /// An object instance's TLV that is not a resource.
    #[error("/{object}/{instance}: expected a resource TLV, found kind {kind}")]
    NotAResource {
        /// Object ID.
        object: u16,
        /// Instance ID.
        instance: u16,
        /// The TLV kind found (the type byte's b8-b7).
        kind: u8,
    },
    /// A multiple resource's TLV that is not a resource instance.
    #[error("/{object}/{instance}/{resource}: expected a resource instance TLV")]
    NotAResourceInstance {
        /// Object ID.
        object: u16,
        /// Instance ID.
        instance: u16,
        /// Resource ID.
        resource: u16,
    },
}

/// What is wrong with a resource value ([`Lwm2mError::BadValue`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueProblem {
    /// A string that is not UTF-8.
    #[error("not UTF-8: {0}")]
    NotUtf8(std::string::FromUtf8Error),
    /// An integer (or time) of a length other than 1, 2, 4 or 8 bytes.
    #[error("an integer of {len} bytes (1, 2, 4 or 8 expected)")]
    IntegerLength {
        /// The value's length.
        len: usize,
    },
    /// An unsigned integer of a length other than 1, 2, 4 or 8 bytes.
    #[error("an unsigned integer of {len} bytes (1, 2, 4 or 8 expected)")]
    UnsignedIntegerLength {
        /// The value's length.
        len: usize,
    },
    /// A float of a length other than 4 or 8 bytes.
    #[error("a float of {len} bytes (4 or 8 expected)")]
    FloatLength {
        /// The value's length.
        len: usize,
    },
    /// A boolean other than one byte `00` or `01`.
    #[error("boolean {} (one byte 00 or 01 expected)", hex::encode_upper(.value))]
    Boolean {
        /// The value's bytes.
        value: Vec<u8>,
    },
    /// An object link of a length other than 4 bytes.
    #[error("an object link of {len} bytes (4 expected)")]
    ObjlnkLength {
        /// The value's length.
        len: usize,
    },
}

/// Why a description cannot be encoded ([`Lwm2mError::Encode`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeProblem {
    /// A resource with both or neither of a value and instances.
    #[error("a resource has either a value or instances")]
    ValueOrInstances,
    /// An object whose instances do not fit its 2-byte length.
    #[error("{len} bytes of instances exceed 65535")]
    InstancesTooLong {
        /// The instances' encoded length.
        len: usize,
    },
    /// More objects than the 2-byte count holds.
    #[error("more than 65535 objects")]
    TooManyObjects {
        /// The number of objects.
        count: usize,
    },
    /// An encoding larger than [`MAX_FILE_SIZE`].
    #[error("{len} bytes exceed the 32 KiB file")]
    FileTooLarge {
        /// The encoding's length.
        len: usize,
    },
    /// An encoding larger than the EF.
    #[error("{len} bytes do not fit the {file_size}-byte file")]
    DoesNotFit {
        /// The encoding's length.
        len: usize,
        /// The EF's size.
        file_size: usize,
    },
    /// A value whose type is not the resource's registry type.
    #[error("the registry type is {expected:?}, the value is {actual:?}")]
    WrongType {
        /// The registry type.
        expected: DataType,
        /// The value's type.
        actual: DataType,
    },
    /// A typed value for a resource the registry does not type.
    #[error("a resource without a registry type must be opaque (hex)")]
    NotOpaque {
        /// The value's type.
        actual: DataType,
    },
    /// An opaque value that is not hex.
    #[error("opaque value is not hex: {0}")]
    NotHex(hex::FromHexError),
}

// `hex::FromHexError` holds only a `char` and `usize`s, so its `PartialEq` is
// an equivalence; it just does not declare `Eq`.
impl Eq for EncodeProblem {}

/// A registry data type (OMA-TS-LightweightM2M_Core appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// UTF-8 string.
    String,
    /// Signed integer (1, 2, 4 or 8 bytes).
    Integer,
    /// Unsigned integer (1, 2, 4 or 8 bytes).
    UnsignedInteger,
    /// Float (4 or 8 bytes).
    Float,
    /// Boolean (1 byte, 0 or 1).
    Boolean,
    /// Opaque bytes.
    Opaque,
    /// Time (signed integer, seconds since the Unix epoch).
    Time,
    /// Object link (object ID, instance ID).
    Objlnk,
}

/// The registry type and name of a Security (0) or Server (1) resource.
pub fn registry(object: u16, resource: u16) -> Option<(&'static str, DataType)> {
    use DataType::*;
    Some(match (object, resource) {
        (0, 0) => ("LwM2M Server URI", String),
        (0, 1) => ("Bootstrap-Server", Boolean),
        (0, 2) => ("Security Mode", Integer),
        (0, 3) => ("Public Key or Identity", Opaque),
        (0, 4) => ("Server Public Key", Opaque),
        (0, 5) => ("Secret Key", Opaque),
        (0, 6) => ("SMS Security Mode", Integer),
        (0, 7) => ("SMS Binding Key Parameters", Opaque),
        (0, 8) => ("SMS Binding Secret Key(s)", Opaque),
        (0, 9) => ("LwM2M Server SMS Number", String),
        (0, 10) => ("Short Server ID", Integer),
        (0, 11) => ("Client Hold Off Time", Integer),
        (0, 12) => ("Bootstrap-Server Account Timeout", Integer),
        (0, 13) => ("Matching Type", UnsignedInteger),
        (0, 14) => ("SNI", String),
        (0, 15) => ("Certificate Usage", UnsignedInteger),
        (0, 16) => ("DTLS/TLS Ciphersuite", UnsignedInteger),
        (0, 17) => ("OSCORE Security Mode", Objlnk),
        (1, 0) => ("Short Server ID", Integer),
        (1, 1) => ("Lifetime", Integer),
        (1, 2) => ("Default Minimum Period", Integer),
        (1, 3) => ("Default Maximum Period", Integer),
        (1, 5) => ("Disable Timeout", Integer),
        (1, 6) => ("Notification Storing When Disabled or Offline", Boolean),
        (1, 7) => ("Binding", String),
        (1, 10) => ("APN Link", Objlnk),
        (1, 11) => ("TLS-DTLS Alert Code", UnsignedInteger),
        (1, 12) => ("Last Bootstrapped", Time),
        (1, 13) => ("Registration Priority Order", UnsignedInteger),
        (1, 14) => ("Initial Registration Delay Timer", UnsignedInteger),
        (1, 15) => ("Registration Failure Block", Boolean),
        (1, 16) => ("Bootstrap on Registration Failure", Boolean),
        (1, 17) => ("Communication Retry Count", UnsignedInteger),
        (1, 18) => ("Communication Retry Timer", UnsignedInteger),
        (1, 19) => ("Communication Sequence Delay Timer", UnsignedInteger),
        (1, 20) => ("Communication Sequence Retry Count", UnsignedInteger),
        (1, 21) => ("Trigger", Boolean),
        (1, 22) => ("Preferred Transport", String),
        (1, 23) => ("Mute Send", Boolean),
        _ => return None,
    })
}

/// Whether a resource holds a secret that is never shown (Security object:
/// Secret Key 5, SMS Binding Secret Key(s) 8).
pub fn is_secret(object: u16, resource: u16) -> bool {
    object == 0 && matches!(resource, 5 | 8)
}

/// A typed resource value. JSON: `{"type": "string", "value": "coap://…"}`;
/// opaque values are hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "kebab-case")]
pub enum Value {
    /// UTF-8 string.
    String(String),
    /// Signed integer.
    Integer(i64),
    /// Unsigned integer.
    UnsignedInteger(u64),
    /// Float.
    Float(f64),
    /// Boolean.
    Boolean(bool),
    /// Time (seconds since the epoch).
    Time(i64),
    /// Object link.
    Objlnk {
        /// Object ID.
        object: u16,
        /// Instance ID.
        instance: u16,
    },
    /// Opaque bytes (and any resource without a registry type), hex.
    Opaque(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s:?}"),
            Value::Integer(v) | Value::Time(v) => write!(f, "{v}"),
            Value::UnsignedInteger(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Boolean(v) => write!(f, "{v}"),
            Value::Objlnk { object, instance } => write!(f, "{object}:{instance}"),
            Value::Opaque(h) => write!(f, "0x{h}"),
        }
    }
}

/// One instance of a multiple resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceInstance {
    /// Resource instance ID.
    pub id: u16,
    /// Its value.
    pub value: Value,
}

/// A resource: a single value, or instances of a multiple resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Resource ID.
    pub id: u16,
    /// The registry name (output only; ignored on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The value of a single resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The instances of a multiple resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Vec<ResourceInstance>>,
}

/// An object instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Object instance ID.
    pub id: u16,
    /// Its resources.
    pub resources: Vec<Resource>,
}

/// One object of the bootstrap file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Object {
    /// Object ID (0 Security, 1 Server, ...).
    pub id: u16,
    /// The version byte as stored (`0`: no version given).
    #[serde(default)]
    pub version: u8,
    /// Its instances.
    pub instances: Vec<Instance>,
}

/// A decoded EF(LwM2M_Bootstrap). JSON form: `{"format": 1, "objects": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapFile {
    /// Version of this JSON form (1).
    #[serde(default = "format_one")]
    pub format: u32,
    /// The objects, in file order.
    pub objects: Vec<Object>,
}

fn format_one() -> u32 {
    1
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Lwm2mError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Lwm2mError::Truncated {
                offset: self.pos,
                shortfall: Shortfall::Field {
                    field: what,
                    needed: n,
                    left: self.data.len() - self.pos,
                    element: None,
                },
            }),
        }
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, Lwm2mError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// One OMA-TLV element: its kind (the type byte's b8-b7), identifier, value
/// and the value's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tlv<'a> {
    kind: u8,
    id: u16,
    value: &'a [u8],
    offset: usize,
}

const OBJECT_INSTANCE: u8 = 0;
const RESOURCE_INSTANCE: u8 = 1;
const MULTIPLE_RESOURCE: u8 = 2;
const RESOURCE: u8 = 3;

/// Decodes a run of OMA-TLV elements; `base` is the offset of `data` in the file.
fn parse_tlvs(data: &[u8], base: usize) -> Result<Vec<Tlv<'_>>, Lwm2mError> {
    let mut c = Cursor { data, pos: 0 };
    let mut out = Vec::new();
    while c.pos < data.len() {
        let start = c.pos;
        let trunc = |e: Lwm2mError| match e {
            Lwm2mError::Truncated {
                offset,
                shortfall:
                    Shortfall::Field {
                        field,
                        needed,
                        left,
                        ..
                    },
            } => Lwm2mError::Truncated {
                offset: offset + base,
                shortfall: Shortfall::Field {
                    field,
                    needed,
                    left,
                    element: Some(start + base),
                },
            },
            other => other,
        };
        let ty = c.take(1, "type").map_err(trunc)?[0];
        let id = if ty & 0x20 != 0 {
            c.u16("identifier").map_err(trunc)?
        } else {
            u16::from(c.take(1, "identifier").map_err(trunc)?[0])
        };
        let len = match (ty >> 3) & 0x03 {
            0 => usize::from(ty & 0x07),
            n => {
                let b = c.take(usize::from(n), "length").map_err(trunc)?;
                b.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x))
            }
        };
        let offset = c.pos + base;
        let value = c.take(len, "value").map_err(trunc)?;
        out.push(Tlv {
            kind: ty >> 6,
            id,
            value,
            offset,
        });
    }
    Ok(out)
}

fn decode_value(
    object: u16,
    instance: u16,
    resource: u16,
    t: &Tlv<'_>,
) -> Result<Value, Lwm2mError> {
    let bad = |problem: ValueProblem| Lwm2mError::BadValue {
        object,
        instance,
        resource,
        offset: t.offset,
        problem,
    };
    let v = t.value;
    let ty = registry(object, resource).map_or(DataType::Opaque, |(_, ty)| ty);
    let int = |v: &[u8]| -> Result<i64, Lwm2mError> {
        match v.len() {
            1 => Ok(i64::from(v[0] as i8)),
            2 => Ok(i64::from(i16::from_be_bytes([v[0], v[1]]))),
            4 => Ok(i64::from(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(v);
                Ok(i64::from_be_bytes(b))
            }
            len => Err(bad(ValueProblem::IntegerLength { len })),
        }
    };
    Ok(match ty {
        DataType::String => {
            Value::String(String::from_utf8(v.to_vec()).map_err(|e| bad(ValueProblem::NotUtf8(e)))?)
        }
        DataType::Integer => Value::Integer(int(v)?),
        DataType::Time => Value::Time(int(v)?),
        DataType::UnsignedInteger => {
            if !matches!(v.len(), 1 | 2 | 4 | 8) {
                return Err(bad(ValueProblem::UnsignedIntegerLength { len: v.len() }));
            }
            Value::UnsignedInteger(v.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
        }
        DataType::Float => match v.len() {
            4 => Value::Float(f64::from(f32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(v);
                Value::Float(f64::from_be_bytes(b))
            }
            len => return Err(bad(ValueProblem::FloatLength { len })),
        },
        DataType::Boolean => match v {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(bad(ValueProblem::Boolean { value: v.to_vec() })),
        },
        DataType::Objlnk => match v {
            [a, b, c, d] => Value::Objlnk {
                object: u16::from_be_bytes([*a, *b]),
                instance: u16::from_be_bytes([*c, *d]),
            },
            _ => return Err(bad(ValueProblem::ObjlnkLength { len: v.len() })),
        },
        DataType::Opaque => Value::Opaque(hex::encode_upper(v)),
    })
}

fn decode_object(id: u16, payload: &[u8], base: usize) -> Result<Vec<Instance>, Lwm2mError> {
    let mut instances = Vec::new();
    for inst in parse_tlvs(payload, base)? {
        if inst.kind != OBJECT_INSTANCE {
            return Err(Lwm2mError::Invalid {
                offset: inst.offset,
                problem: LayoutProblem::NotAnObjectInstance {
                    object: id,
                    kind: inst.kind,
                },
            });
        }
        let mut resources = Vec::new();
        for r in parse_tlvs(inst.value, inst.offset)? {
            let name = registry(id, r.id).map(|(n, _)| n.to_string());
            match r.kind {
                RESOURCE => resources.push(Resource {
                    id: r.id,
                    name,
                    value: Some(decode_value(id, inst.id, r.id, &r)?),
                    instances: None,
                }),
                MULTIPLE_RESOURCE => {
                    let mut items = Vec::new();
                    for ri in parse_tlvs(r.value, r.offset)? {
                        if ri.kind != RESOURCE_INSTANCE {
                            return Err(Lwm2mError::Invalid {
                                offset: ri.offset,
                                problem: LayoutProblem::NotAResourceInstance {
                                    object: id,
                                    instance: inst.id,
                                    resource: r.id,
                                },
                            });
                        }
                        items.push(ResourceInstance {
                            id: ri.id,
                            value: decode_value(id, inst.id, r.id, &ri)?,
                        });
                    }
                    resources.push(Resource {
                        id: r.id,
                        name,
                        value: None,
                        instances: Some(items),
                    });
                }
                k => {
                    return Err(Lwm2mError::Invalid {
                        offset: r.offset,
                        problem: LayoutProblem::NotAResource {
                            object: id,
                            instance: inst.id,
                            kind: k,
                        },
                    })
                }
            }
        }
        instances.push(Instance {
            id: inst.id,
            resources,
        });
    }
    Ok(instances)
}

impl BootstrapFile {
    /// Decodes the file's bytes (with its `FF` padding).
    pub fn decode(data: &[u8]) -> Result<BootstrapFile, Lwm2mError> {
        let mut c = Cursor { data, pos: 0 };
        let count = c.u16("number of objects")?;
        let size = usize::from(c.u16("size")?);
        let body_end = 4 + size;
        if body_end > MAX_FILE_SIZE {
            return Err(Lwm2mError::Invalid {
                offset: 2,
                problem: LayoutProblem::SizeTooLarge { size },
            });
        }
        if body_end > data.len() {
            return Err(Lwm2mError::Truncated {
                offset: data.len(),
                shortfall: Shortfall::Declared {
                    size,
                    available: data.len() - 4,
                },
            });
        }
        let mut body = Cursor {
            data: &data[..body_end],
            pos: 4,
        };
        let mut objects = Vec::new();
        for _ in 0..count {
            let id = body.u16("object ID")?;
            let version = body.take(1, "object version")?[0];
            let len = usize::from(body.u16("object length")?);
            let start = body.pos;
            let payload = body.take(len, "object data")?;
            objects.push(Object {
                id,
                version,
                instances: decode_object(id, payload, start)?,
            });
        }
        if body.pos != body_end {
            return Err(Lwm2mError::Invalid {
                offset: body.pos,
                problem: LayoutProblem::SizeMismatch {
                    count,
                    end: body.pos,
                    declared_end: body_end,
                },
            });
        }
        if let Some(i) = data[body_end..].iter().position(|b| *b != 0xFF) {
            return Err(Lwm2mError::Invalid {
                offset: body_end + i,
                problem: LayoutProblem::NotPadding {
                    byte: data[body_end + i],
                },
            });
        }
        Ok(BootstrapFile { format: 1, objects })
    }

    /// Encodes the file (without padding; see [`BootstrapFile::encode_padded`]).
    pub fn encode(&self) -> Result<Vec<u8>, Lwm2mError> {
        let mut body = Vec::new();
        for o in &self.objects {
            let mut tlv = Vec::new();
            for inst in &o.instances {
                let mut inner = Vec::new();
                for r in &inst.resources {
                    let path = format!("/{}/{}/{}", o.id, inst.id, r.id);
                    match (&r.value, &r.instances) {
                        (Some(v), None) => write_tlv(
                            &mut inner,
                            RESOURCE,
                            r.id,
                            &encode_value(o.id, r.id, v, &path)?,
                        ),
                        (None, Some(items)) => {
                            let mut m = Vec::new();
                            for ri in items {
                                let p = format!("{path}/{}", ri.id);
                                let value = encode_value(o.id, r.id, &ri.value, &p)?;
                                write_tlv(&mut m, RESOURCE_INSTANCE, ri.id, &value);
                            }
                            write_tlv(&mut inner, MULTIPLE_RESOURCE, r.id, &m);
                        }
                        _ => {
                            return Err(Lwm2mError::Encode {
                                path,
                                problem: EncodeProblem::ValueOrInstances,
                            })
                        }
                    }
                }
                write_tlv(&mut tlv, OBJECT_INSTANCE, inst.id, &inner);
            }
            let len = u16::try_from(tlv.len()).map_err(|_| Lwm2mError::Encode {
                path: format!("/{}", o.id),
                problem: EncodeProblem::InstancesTooLong { len: tlv.len() },
            })?;
            body.extend_from_slice(&o.id.to_be_bytes());
            body.push(o.version);
            body.extend_from_slice(&len.to_be_bytes());
            body.extend_from_slice(&tlv);
        }
        let count = u16::try_from(self.objects.len()).map_err(|_| Lwm2mError::Encode {
            path: "/".into(),
            problem: EncodeProblem::TooManyObjects {
                count: self.objects.len(),
            },
        })?;
        let size = u16::try_from(body.len())
            .ok()
            .filter(|s| usize::from(*s) + 4 <= MAX_FILE_SIZE)
            .ok_or_else(|| Lwm2mError::Encode {
                path: "/".into(),
                problem: EncodeProblem::FileTooLarge {
                    len: body.len() + 4,
                },
            })?;
        let mut out = Vec::with_capacity(body.len() + 4);
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Encodes the file and pads it with `FF` to `file_size` bytes (the EF's
    /// size from its FCP); an encoding larger than the file is an error.
    pub fn encode_padded(&self, file_size: usize) -> Result<Vec<u8>, Lwm2mError> {
        let mut out = self.encode()?;
        if out.len() > file_size {
            return Err(Lwm2mError::Encode {
                path: "/".into(),
                problem: EncodeProblem::DoesNotFit {
                    len: out.len(),
                    file_size,
                },
            });
        }
        out.resize(file_size, 0xFF);
        Ok(out)
    }

    /// A copy with the secret resources (Security object: Secret Key `/0/x/5`,
    /// SMS Binding Secret Key(s) `/0/x/8`) emptied, and their paths: what may
    /// be shown or logged.
    pub fn redacted(&self) -> (BootstrapFile, Vec<String>) {
        let mut copy = self.clone();
        let mut paths = Vec::new();
        for o in copy.objects.iter_mut().filter(|o| o.id == 0) {
            for i in &mut o.instances {
                for r in i.resources.iter_mut().filter(|r| is_secret(0, r.id)) {
                    paths.push(format!("/0/{}/{}", i.id, r.id));
                    if r.value.is_some() {
                        r.value = Some(Value::Opaque(String::new()));
                    }
                    for ri in r.instances.iter_mut().flatten() {
                        ri.value = Value::Opaque(String::new());
                    }
                }
            }
        }
        (copy, paths)
    }

    /// The configuration a LwM2M client consumes: one `(path, value)` per
    /// resource (instance), e.g. `("/0/0/0", String("coap://…"))`.
    pub fn entries(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for o in &self.objects {
            for i in &o.instances {
                for r in &i.resources {
                    let path = format!("/{}/{}/{}", o.id, i.id, r.id);
                    if let Some(v) = &r.value {
                        out.push((path.clone(), v.clone()));
                    }
                    for ri in r.instances.iter().flatten() {
                        out.push((format!("{path}/{}", ri.id), ri.value.clone()));
                    }
                }
            }
        }
        out
    }
}

fn write_tlv(out: &mut Vec<u8>, kind: u8, id: u16, value: &[u8]) {
    let mut ty = kind << 6;
    if id > 0xFF {
        ty |= 0x20;
    }
    let len = value.len();
    let len_bytes: usize = match len {
        0..=7 => {
            ty |= len as u8;
            0
        }
        8..=0xFF => 1,
        0x100..=0xFFFF => 2,
        _ => 3,
    };
    ty |= (len_bytes as u8) << 3;
    out.push(ty);
    if id > 0xFF {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    let lb = (len as u32).to_be_bytes();
    out.extend_from_slice(&lb[4 - len_bytes..]);
    out.extend_from_slice(value);
}

fn encode_value(object: u16, resource: u16, v: &Value, path: &str) -> Result<Vec<u8>, Lwm2mError> {
    let expected = registry(object, resource).map(|(_, t)| t);
    let actual = match v {
        Value::String(_) => DataType::String,
        Value::Integer(_) => DataType::Integer,
        Value::UnsignedInteger(_) => DataType::UnsignedInteger,
        Value::Float(_) => DataType::Float,
        Value::Boolean(_) => DataType::Boolean,
        Value::Time(_) => DataType::Time,
        Value::Objlnk { .. } => DataType::Objlnk,
        Value::Opaque(_) => DataType::Opaque,
    };
    if let Some(t) = expected {
        if t != actual {
            return Err(Lwm2mError::Encode {
                path: path.into(),
                problem: EncodeProblem::WrongType {
                    expected: t,
                    actual,
                },
            });
        }
    } else if actual != DataType::Opaque {
        return Err(Lwm2mError::Encode {
            path: path.into(),
            problem: EncodeProblem::NotOpaque { actual },
        });
    }
    Ok(match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) | Value::Time(i) => {
            let i = *i;
            if let Ok(x) = i8::try_from(i) {
                x.to_be_bytes().to_vec()
            } else if let Ok(x) = i16::try_from(i) {
                x.to_be_bytes().to_vec()
            } else if let Ok(x) = i32::try_from(i) {
                x.to_be_bytes().to_vec()
            } else {
                i.to_be_bytes().to_vec()
            }
        }
        Value::UnsignedInteger(u) => {
            let u = *u;
            if let Ok(x) = u8::try_from(u) {
                vec![x]
            } else if let Ok(x) = u16::try_from(u) {
                x.to_be_bytes().to_vec()
            } else if let Ok(x) = u32::try_from(u) {
                x.to_be_bytes().to_vec()
            } else {
                u.to_be_bytes().to_vec()
            }
        }
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                narrow.to_be_bytes().to_vec()
            } else {
                f.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::Objlnk { object, instance } => {
            let mut b = object.to_be_bytes().to_vec();
            b.extend_from_slice(&instance.to_be_bytes());
            b
        }
        Value::Opaque(h) => hex::decode(h).map_err(|e| Lwm2mError::Encode {
            path: path.into(),
            problem: EncodeProblem::NotHex(e),
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::scripted::h;

    /// The bootstrap file of the modem vendor's unit test (see
    /// test-vectors/transcripts/uicc-lwm2m-nrf-csim.json).
    const VENDOR: &str = "00010036000000003108002EC80025636F61703A2F2F6C657368616E2E65636C697073\
                          6570726F6A656374732E696F3A35373833C10101C10203FFFF";

    #[test]
    fn decodes_the_vendor_file() {
        let f = BootstrapFile::decode(&h(VENDOR)).unwrap();
        assert_eq!(f.objects.len(), 1);
        let o = &f.objects[0];
        assert_eq!((o.id, o.version), (0, 0));
        assert_eq!(o.instances.len(), 1);
        let e = f.entries();
        assert_eq!(
            e,
            vec![
                (
                    "/0/0/0".into(),
                    Value::String("coap://leshan.eclipseprojects.io:5783".into())
                ),
                ("/0/0/1".into(), Value::Boolean(true)),
                ("/0/0/2".into(), Value::Integer(3)),
            ]
        );
        // Encoding gives the same bytes back (without the padding).
        let enc = f.encode().unwrap();
        assert_eq!(enc, h(VENDOR)[..58].to_vec());
        assert_eq!(f.encode_padded(60).unwrap(), h(VENDOR));
        assert!(f.encode_padded(57).is_err());
    }

    #[test]
    fn json_round_trip_and_multiple_resources() {
        let json = r#"{"format":1,"objects":[
            {"id":0,"instances":[{"id":1,"resources":[
                {"id":0,"value":{"type":"string","value":"coaps://bs.example:5684"}},
                {"id":3,"value":{"type":"opaque","value":"69640A"}},
                {"id":10,"value":{"type":"integer","value":300}}]}]},
            {"id":1,"version":17,"instances":[{"id":0,"resources":[
                {"id":0,"value":{"type":"integer","value":300}},
                {"id":1,"value":{"type":"integer","value":86400}},
                {"id":7,"value":{"type":"string","value":"U"}}]}]},
            {"id":4000,"instances":[{"id":300,"resources":[
                {"id":2,"instances":[{"id":0,"value":{"type":"opaque","value":"01"}},
                                     {"id":1,"value":{"type":"opaque","value":"0203"}}]}]}]}]}"#;
        let f: BootstrapFile = serde_json::from_str(json).unwrap();
        let bytes = f.encode_padded(200).unwrap();
        let back = BootstrapFile::decode(&bytes).unwrap();
        // Names are filled in on decode; otherwise identical.
        let strip = |mut b: BootstrapFile| {
            for o in &mut b.objects {
                for i in &mut o.instances {
                    for r in &mut i.resources {
                        r.name = None;
                    }
                }
            }
            b
        };
        assert_eq!(strip(back.clone()), f);
        assert_eq!(
            back.objects[1].instances[0].resources[1].name.as_deref(),
            Some("Lifetime")
        );
        // 16-bit IDs (4000, 300) survive.
        assert_eq!(back.objects[2].id, 4000);
        assert_eq!(back.objects[2].instances[0].id, 300);
        // Wrong type for a registry resource is refused, naming the path.
        let bad = json.replace(r#""value":"U""#, r#""value":7"#).replace(
            r#"{"type":"string","value":7}"#,
            r#"{"type":"integer","value":7}"#,
        );
        let f: BootstrapFile = serde_json::from_str(&bad).unwrap();
        let e = f.encode().unwrap_err();
        assert!(e.to_string().contains("/1/0/7"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_for_display() {
        let json = r#"{"objects":[{"id":0,"instances":[{"id":0,"resources":[
            {"id":3,"value":{"type":"opaque","value":"6964"}},
            {"id":5,"value":{"type":"opaque","value":"0011223344"}}]}]}]}"#;
        let f: BootstrapFile = serde_json::from_str(json).unwrap();
        let (shown, paths) = f.redacted();
        assert_eq!(paths, vec!["/0/0/5".to_string()]);
        let text = serde_json::to_string(&shown).unwrap();
        assert!(
            !text.contains("0011223344") && text.contains("6964"),
            "{text}"
        );
    }

    #[test]
    fn bad_files_are_refused_with_offsets() {
        let good = h(VENDOR);
        // Truncated inside the string.
        let e = BootstrapFile::decode(&good[..30]).unwrap_err();
        assert!(matches!(e, Lwm2mError::Truncated { .. }), "{e}");
        // Garbage after the objects instead of FF padding.
        let mut g = good.clone();
        g[59] = 0x00;
        assert_eq!(
            BootstrapFile::decode(&g).unwrap_err().to_string(),
            "LwM2M bootstrap: at offset 59: byte 00 after the objects (only FF padding may follow)"
        );
        // Boolean 2 in /0/0/1 (value at offset 54).
        let mut g = good.clone();
        g[54] = 0x02;
        let e = BootstrapFile::decode(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LwM2M bootstrap: /0/0/1 at offset 54: boolean 02 (one byte 00 or 01 expected)"
        );
        // Object count 2 with one object.
        let mut g = good.clone();
        g[1] = 2;
        assert!(BootstrapFile::decode(&g).is_err());
        // Header size too big for the file, and for any file.
        assert!(BootstrapFile::decode(&h("00010100")).is_err());
        let e = BootstrapFile::decode(&h("0001FFFF")).unwrap_err();
        assert!(e.to_string().contains("32 KiB"), "{e}");
        assert!(BootstrapFile::decode(&h("00")).is_err());
    }

    #[test]
    fn layout_problems_read_as_before() {
        // The instance TLV's kind changed to a resource instance (01).
        let mut g = h(VENDOR);
        g[9] = 0x48;
        let e = BootstrapFile::decode(&g).unwrap_err();
        assert!(matches!(
            e,
            Lwm2mError::Invalid {
                problem: LayoutProblem::NotAnObjectInstance { object: 0, kind: 1 },
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "LwM2M bootstrap: at offset 12: object 0: expected an object instance TLV, found kind 1"
        );
        assert_eq!(
            BootstrapFile::decode(&h("0001FFFF"))
                .unwrap_err()
                .to_string(),
            "LwM2M bootstrap: at offset 2: the header declares 65535 bytes of objects, \
             more than the 32 KiB file allows"
        );
    }

    #[test]
    fn shortfalls_name_the_field_and_the_element() {
        let good = h(VENDOR);
        // The header declares more than the 30 bytes hold.
        let e = BootstrapFile::decode(&good[..30]).unwrap_err();
        assert!(
            matches!(
                e,
                Lwm2mError::Truncated {
                    shortfall: Shortfall::Declared { available: 26, .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().ends_with("bytes of objects, the file has 26"),
            "{e}"
        );
        // An OMA-TLV resource whose 1-byte value is missing.
        let tlv = parse_tlvs(&[0xC1, 0x00], 100).unwrap_err();
        assert_eq!(
            tlv.to_string(),
            "LwM2M bootstrap: truncated at offset 102: OMA-TLV element at offset 100: \
             value: 1 bytes needed, 0 left"
        );
    }

    #[test]
    fn value_problems_read_as_before() {
        // A string starting with byte FF.
        let mut g = h(VENDOR);
        g[15] = 0xFF;
        let e = BootstrapFile::decode(&g).unwrap_err();
        assert!(matches!(
            e,
            Lwm2mError::BadValue {
                problem: ValueProblem::NotUtf8(_),
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "LwM2M bootstrap: /0/0/0 at offset 15: not UTF-8: \
             invalid utf-8 sequence of 1 bytes from index 0"
        );
        // /0/0/2 (Security Mode, an integer) of 3 bytes.
        let e = BootstrapFile::decode(&h("0001000C00000000070500C302010203")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LwM2M bootstrap: /0/0/2 at offset 13: an integer of 3 bytes (1, 2, 4 or 8 expected)"
        );
    }

    #[test]
    fn encode_problems_read_as_before() {
        let f = BootstrapFile::decode(&h(VENDOR)).unwrap();
        let e = f.encode_padded(57).unwrap_err();
        assert_eq!(
            e,
            Lwm2mError::Encode {
                path: "/".into(),
                problem: EncodeProblem::DoesNotFit {
                    len: 58,
                    file_size: 57
                },
            }
        );
        assert_eq!(
            e.to_string(),
            "LwM2M bootstrap: cannot encode /: 58 bytes do not fit the 57-byte file"
        );
        let json = r#"{"format":1,"objects":[{"id":0,"instances":[{"id":1,"resources":[
            {"id":3,"value":{"type":"opaque","value":"6G"}}]}]}]}"#;
        let f: BootstrapFile = serde_json::from_str(json).unwrap();
        assert_eq!(
            f.encode().unwrap_err().to_string(),
            "LwM2M bootstrap: cannot encode /0/1/3: opaque value is not hex: \
             Invalid character 'G' at position 1"
        );
        let json = json.replace(
            r#"{"type":"opaque","value":"6G"}"#,
            r#"{"type":"integer","value":7}"#,
        );
        let f: BootstrapFile = serde_json::from_str(&json).unwrap();
        assert_eq!(
            f.encode().unwrap_err().to_string(),
            "LwM2M bootstrap: cannot encode /0/1/3: the registry type is Opaque, the value is Integer"
        );
    }
}
