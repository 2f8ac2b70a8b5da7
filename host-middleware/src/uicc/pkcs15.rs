//! PKCS#15 / ISO/IEC 7816-15 structures a UICC carries, decoded with the
//! `der` crate: EF(DIR) application templates, EF(ODF), EF(DODF) data-object
//! entries (opaque DOs with an `applicationOID`, and `oidDO` entries) and
//! EF(TokenInfo).
//!
//! Files are read whole and may be padded with `FF` (or `00`) after the last
//! object; anything else after the objects is an error naming its offset.

use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};
use serde::Serialize;

/// The PKCS#15 application identifier (`A0 00 00 00 63 "PKCS-15"`).
pub const PKCS15_AID: [u8; 12] = [
    0xA0, 0x00, 0x00, 0x00, 0x63, 0x50, 0x4B, 0x43, 0x53, 0x2D, 0x31, 0x35,
];
/// The LwM2M bootstrap data object OID (OMA-TS-LightweightM2M_Core, appendix G).
pub const OID_LWM2M_BOOTSTRAP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.43.9.1");
/// The OMA DM bootstrap data object OID (OMA-TS-DM_Bootstrap, smartcard profile).
pub const OID_DM_BOOTSTRAP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.43.7.1");
/// Default file ID of EF(ODF) in the PKCS#15 application.
pub const FID_ODF: u16 = 0x5031;
/// Default file ID of EF(TokenInfo).
pub const FID_TOKEN_INFO: u16 = 0x5032;
/// File ID of EF(DIR) under the MF.
pub const FID_DIR: u16 = 0x2F00;

/// Why a PKCS#15 file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs15Error {
    /// DER that does not decode.
    #[error("{file}: {what} at offset {offset}: {source}")]
    Der {
        /// The file (e.g. "EF(DODF)").
        file: &'static str,
        /// The structure being decoded.
        what: &'static str,
        /// Offset of the structure in the file.
        offset: usize,
        /// The DER error.
        #[source]
        source: der::Error,
    },
    /// Well-formed DER that is not what the file should hold.
    #[error("{file}: {what} at offset {offset}: {problem}")]
    Invalid {
        /// The file.
        file: &'static str,
        /// The structure.
        what: &'static str,
        /// Offset of the structure in the file.
        offset: usize,
        /// What is wrong.
        problem: Pkcs15Problem,
    },
}

/// What is wrong with well-formed DER ([`Pkcs15Error::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs15Problem {
    /// A header or length that does not fit this machine's `usize`.
    #[error("length overflow")]
    LengthOverflow,
    /// An object longer than what is left of the file.
    #[error("{declared} bytes declared, {left} left in the file (truncated)")]
    Truncated {
        /// The length the object declares.
        declared: usize,
        /// The bytes left after its header.
        left: usize,
    },
    /// The file holds no object.
    #[error("the file is empty")]
    Empty,
    /// Not a constructed context-specific tag (an ODF entry).
    #[error("expected a constructed context tag, found {0}")]
    NotContextTag(Tag),
    /// A DODF entry that is none of the three forms.
    #[error("expected SEQUENCE, [0] or [1], found {0}")]
    NotDataObjectEntry(Tag),
    /// Something else where a SEQUENCE belongs.
    #[error("found {0}")]
    NotSequence(Tag),
    /// Something else where the `[1]` typeAttributes belong.
    #[error("expected [1], found {0}")]
    NotTypeAttributes(Tag),
    /// An `ObjectValue` that is neither a Path nor a direct `[0]` value.
    #[error("expected a Path or a direct [0] value, found {0}")]
    NotObjectValue(Tag),
    /// An EF(DIR) record that is not an application template.
    #[error("expected tag 61, found {0}")]
    NotApplicationTemplate(Tag),
    /// An entry without its commonObjectAttributes.
    #[error("no commonObjectAttributes")]
    NoCommonAttributes,
    /// A DODF entry without its CommonDataObjectAttributes.
    #[error("no data object attributes")]
    NoDataObjectAttributes,
    /// An AODF entry without both its common and authentication attributes.
    #[error("expected commonObjectAttributes and CommonAuthenticationObjectAttributes")]
    NoAuthenticationAttributes,
    /// An entry without its `[1]` typeAttributes.
    #[error("no typeAttributes [1]")]
    NoTypeAttributes,
    /// Authentication attributes without an `authId`.
    #[error("no authId")]
    NoAuthId,
    /// An application template without an AID.
    #[error("no AID (tag 4F)")]
    NoAid,
    /// A TokenInfo without its version.
    #[error("no version")]
    NoVersion,
    /// An `oidDO` whose type attribute is not `id` and `value`.
    #[error("{0} fields, expected id and value")]
    OidDoFields(usize),
    /// An `oidDO` whose `id` is not an OBJECT IDENTIFIER.
    #[error("id is {0}, not an OID")]
    OidDoId(Tag),
    /// OBJECT IDENTIFIER content that is not an OID.
    #[error("not a valid OID: {0}")]
    BadOid(der::oid::Error),
    /// A PinAttributes field missing or of another type.
    #[error("{field}: found {}", .found.map_or("nothing".to_string(), |t| t.to_string()))]
    PinField {
        /// The field (`pinFlags`, `pinType`, `minLength`, `storedLength`).
        field: &'static str,
        /// The tag found in its place, if any.
        found: Option<Tag>,
    },
    /// INTEGER or ENUMERATED content that is empty, negative or over 5 bytes.
    #[error("{} is not a small non-negative integer", hex::encode_upper(.0))]
    NotSmallUnsigned(Vec<u8>),
    /// A value over `u32::MAX`.
    #[error("{0} is too large")]
    TooLarge(u64),
    /// A `pinReference` over 255.
    #[error("{0} is not a key reference (0-255)")]
    NotKeyReference(u32),
    /// A `padChar` that is not one byte.
    #[error("{0} bytes, 1 expected")]
    PadCharLength(usize),
    /// PIN lengths a VERIFY cannot be built from.
    #[error(
        "lengths min {min} stored {stored} are not usable (stored 1 to 64, min at most stored)"
    )]
    UnusableLengths {
        /// `minLength`.
        min: u32,
        /// `storedLength`.
        stored: u32,
    },
}

fn der_err(
    file: &'static str,
    what: &'static str,
    offset: usize,
) -> impl FnOnce(der::Error) -> Pkcs15Error {
    move |source| Pkcs15Error::Der {
        file,
        what,
        offset,
        source,
    }
}

fn invalid(
    file: &'static str,
    what: &'static str,
    offset: usize,
    problem: Pkcs15Problem,
) -> Pkcs15Error {
    Pkcs15Error::Invalid {
        file,
        what,
        offset,
        problem,
    }
}

/// `Path ::= SEQUENCE { efidOrPath OCTET STRING, index INTEGER OPTIONAL,
/// length [0] INTEGER OPTIONAL }` (ISO/IEC 7816-15).
#[derive(Debug, Clone, PartialEq, Eq, der::Sequence)]
pub struct PathDer<'a> {
    /// The file ID or path.
    pub efid_or_path: OctetStringRef<'a>,
    /// Offset of the object in the file.
    #[asn1(optional = "true")]
    pub index: Option<u32>,
    /// Length of the object in the file.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub length: Option<u32>,
}

/// A file reference (a decoded `Path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilePath {
    /// The path bytes, hex (a file ID, a path from the MF starting `3F00`,
    /// or a path relative to the application).
    pub path: String,
    /// Offset of the object within the file, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Length of the object within the file, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
}

impl FilePath {
    /// The path bytes.
    pub fn bytes(&self) -> Vec<u8> {
        hex::decode(&self.path).unwrap_or_default()
    }
}

impl From<PathDer<'_>> for FilePath {
    fn from(p: PathDer<'_>) -> FilePath {
        FilePath {
            path: hex::encode_upper(p.efid_or_path.as_bytes()),
            index: p.index,
            length: p.length,
        }
    }
}

/// Splits a file into its top-level DER objects, skipping `FF`/`00` padding
/// after them. Returns each object's offset and bytes.
fn objects<'a>(file: &'static str, data: &'a [u8]) -> Result<Vec<(usize, &'a [u8])>, Pkcs15Error> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.iter().all(|b| *b == 0xFF) || rest.iter().all(|b| *b == 0x00) {
            break;
        }
        let mut reader = SliceReader::new(rest).map_err(der_err(file, "object", pos))?;
        let header = der::Header::decode(&mut reader).map_err(der_err(file, "object", pos))?;
        let head_len = usize::try_from(reader.position())
            .map_err(|_| invalid(file, "object", pos, Pkcs15Problem::LengthOverflow))?;
        let body = usize::try_from(header.length)
            .map_err(|_| invalid(file, "object", pos, Pkcs15Problem::LengthOverflow))?;
        let end = head_len
            .checked_add(body)
            .filter(|end| *end <= rest.len())
            .ok_or_else(|| {
                invalid(
                    file,
                    "object",
                    pos,
                    Pkcs15Problem::Truncated {
                        declared: body,
                        left: rest.len() - head_len.min(rest.len()),
                    },
                )
            })?;
        out.push((pos, &rest[..end]));
        pos += end;
    }
    Ok(out)
}

/// What kind of objects an ODF entry's directory file lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OdfKind {
    /// `[0]` private keys (PrKDF).
    PrivateKeys,
    /// `[1]` public keys.
    PublicKeys,
    /// `[2]` trusted public keys.
    TrustedPublicKeys,
    /// `[3]` secret keys.
    SecretKeys,
    /// `[4]` certificates.
    Certificates,
    /// `[5]` trusted certificates.
    TrustedCertificates,
    /// `[6]` useful certificates.
    UsefulCertificates,
    /// `[7]` data objects (DODF).
    DataObjects,
    /// `[8]` authentication objects (AODF).
    AuthObjects,
    /// Any other context tag.
    Other(u8),
}

/// One entry of EF(ODF).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OdfEntry {
    /// The directory file kind.
    pub kind: OdfKind,
    /// Where the directory file is.
    pub path: FilePath,
}

fn context_number(
    file: &'static str,
    what: &'static str,
    at: usize,
    tag: Tag,
) -> Result<u8, Pkcs15Error> {
    match tag {
        Tag::ContextSpecific {
            constructed: true,
            number,
        } => Ok(number.value()),
        other => Err(invalid(file, what, at, Pkcs15Problem::NotContextTag(other))),
    }
}

/// Parses EF(ODF).
pub fn parse_odf(data: &[u8]) -> Result<Vec<OdfEntry>, Pkcs15Error> {
    const F: &str = "EF(ODF)";
    let mut out = Vec::new();
    for (at, bytes) in objects(F, data)? {
        let any = der::AnyRef::from_der(bytes).map_err(der_err(F, "entry", at))?;
        let n = context_number(F, "entry", at, any.tag())?;
        let kind = match n {
            0 => OdfKind::PrivateKeys,
            1 => OdfKind::PublicKeys,
            2 => OdfKind::TrustedPublicKeys,
            3 => OdfKind::SecretKeys,
            4 => OdfKind::Certificates,
            5 => OdfKind::TrustedCertificates,
            6 => OdfKind::UsefulCertificates,
            7 => OdfKind::DataObjects,
            8 => OdfKind::AuthObjects,
            n => OdfKind::Other(n),
        };
        // PKCS15ObjectsSet: a Path (the only form a card's ODF uses).
        let path = PathDer::from_der(any.value()).map_err(der_err(F, "path", at))?;
        out.push(OdfEntry {
            kind,
            path: path.into(),
        });
    }
    Ok(out)
}

/// Which DODF form an entry had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataObjectForm {
    /// `opaqueDO`: a SEQUENCE; the OID is `applicationOID`.
    Opaque,
    /// `externalIDO` (`[0]`).
    ExternalIdo,
    /// `oidDO` (`[1]`): the OID is the type attribute's `id`.
    OidDo,
}

/// One data object of a DODF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataObject {
    /// The entry form.
    pub form: DataObjectForm,
    /// The object's label (common attributes), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The application name (data-object attributes), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The object's OID: `applicationOID` (opaque) or `id` (oidDO), with a
    /// twice-wrapped OID unwrapped.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_oid")]
    pub oid: Option<ObjectIdentifier>,
    /// Whether the OID was wrapped twice (`06 06 06 04 …`) on the card.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oid_wrapped: bool,
    /// Whether reading the object needs a PIN (an `authId` is present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_id: Option<String>,
    /// Where the value is (an indirect value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<FilePath>,
    /// The value itself, hex, when stored directly in the DODF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct: Option<String>,
    /// Offset of the entry in the DODF.
    pub offset: usize,
}

fn ser_oid<S: serde::Serializer>(oid: &Option<ObjectIdentifier>, s: S) -> Result<S::Ok, S::Error> {
    match oid {
        Some(o) => s.serialize_str(&o.to_string()),
        None => s.serialize_none(),
    }
}

/// The elements of a constructed value.
fn elements<'a>(
    file: &'static str,
    what: &'static str,
    at: usize,
    value: &'a [u8],
) -> Result<Vec<der::AnyRef<'a>>, Pkcs15Error> {
    let mut reader = SliceReader::new(value).map_err(der_err(file, what, at))?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(der::AnyRef::decode(&mut reader).map_err(der_err(file, what, at))?);
    }
    Ok(out)
}

/// An OID, unwrapping one extra `06 LL` layer when its content is itself a
/// DER OID (`06 06 06 04 67 2B 09 01`).
fn oid_of(
    file: &'static str,
    at: usize,
    any: &der::AnyRef<'_>,
) -> Result<(ObjectIdentifier, bool), Pkcs15Error> {
    let v = any.value();
    if v.len() >= 3 && v[0] == 0x06 && usize::from(v[1]) == v.len() - 2 {
        if let Ok(inner) = ObjectIdentifier::from_bytes(&v[2..]) {
            return Ok((inner, true));
        }
    }
    let oid = ObjectIdentifier::from_bytes(v)
        .map_err(|e| invalid(file, "OBJECT IDENTIFIER", at, Pkcs15Problem::BadOid(e)))?;
    Ok((oid, false))
}

fn utf8(
    file: &'static str,
    what: &'static str,
    at: usize,
    any: &der::AnyRef<'_>,
) -> Result<String, Pkcs15Error> {
    let s = der::asn1::Utf8StringRef::try_from(*any).map_err(der_err(file, what, at))?;
    Ok(s.as_str().to_string())
}

/// Parses EF(DODF).
pub fn parse_dodf(data: &[u8]) -> Result<Vec<DataObject>, Pkcs15Error> {
    const F: &str = "EF(DODF)";
    let mut out = Vec::new();
    for (at, bytes) in objects(F, data)? {
        let any = der::AnyRef::from_der(bytes).map_err(der_err(F, "entry", at))?;
        let form = match any.tag() {
            Tag::Sequence => DataObjectForm::Opaque,
            Tag::ContextSpecific {
                constructed: true,
                number,
            } if number == TagNumber::N0 => DataObjectForm::ExternalIdo,
            Tag::ContextSpecific {
                constructed: true,
                number,
            } if number == TagNumber::N1 => DataObjectForm::OidDo,
            other => {
                return Err(invalid(
                    F,
                    "entry",
                    at,
                    Pkcs15Problem::NotDataObjectEntry(other),
                ))
            }
        };
        let parts = elements(F, "entry", at, any.value())?;
        let mut obj = DataObject {
            form,
            label: None,
            application: None,
            oid: None,
            oid_wrapped: false,
            auth_id: None,
            path: None,
            direct: None,
            offset: at,
        };
        let mut it = parts.iter();
        // commonObjectAttributes
        let common = it
            .next()
            .ok_or_else(|| invalid(F, "entry", at, Pkcs15Problem::NoCommonAttributes))?;
        if common.tag() != Tag::Sequence {
            return Err(invalid(
                F,
                "commonObjectAttributes",
                at,
                Pkcs15Problem::NotSequence(common.tag()),
            ));
        }
        for e in elements(F, "commonObjectAttributes", at, common.value())? {
            match e.tag() {
                Tag::Utf8String => obj.label = Some(utf8(F, "label", at, &e)?),
                Tag::OctetString => obj.auth_id = Some(hex::encode_upper(e.value())),
                _ => {}
            }
        }
        // classAttributes: CommonDataObjectAttributes
        let class = it
            .next()
            .ok_or_else(|| invalid(F, "entry", at, Pkcs15Problem::NoDataObjectAttributes))?;
        if class.tag() != Tag::Sequence {
            return Err(invalid(
                F,
                "CommonDataObjectAttributes",
                at,
                Pkcs15Problem::NotSequence(class.tag()),
            ));
        }
        for e in elements(F, "CommonDataObjectAttributes", at, class.value())? {
            match e.tag() {
                Tag::Utf8String => obj.application = Some(utf8(F, "applicationName", at, &e)?),
                Tag::ObjectIdentifier => {
                    let (oid, wrapped) = oid_of(F, at, &e)?;
                    obj.oid = Some(oid);
                    obj.oid_wrapped = wrapped;
                }
                _ => {}
            }
        }
        // [0] subClassAttributes (optional), then [1] typeAttributes.
        let mut type_attr = it.next();
        if let Some(t) = type_attr {
            if t.tag()
                == (Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber::N0,
                })
            {
                type_attr = it.next();
            }
        }
        let t =
            type_attr.ok_or_else(|| invalid(F, "entry", at, Pkcs15Problem::NoTypeAttributes))?;
        if t.tag()
            != (Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::N1,
            })
        {
            return Err(invalid(
                F,
                "typeAttributes",
                at,
                Pkcs15Problem::NotTypeAttributes(t.tag()),
            ));
        }
        let inner = der::AnyRef::from_der(t.value()).map_err(der_err(F, "typeAttributes", at))?;
        let value = match form {
            DataObjectForm::OidDo => {
                // OidDO ::= SEQUENCE { id OBJECT IDENTIFIER, value ObjectValue }
                let fields = elements(F, "OidDO", at, inner.value())?;
                let [id, value] = fields.as_slice() else {
                    return Err(invalid(
                        F,
                        "OidDO",
                        at,
                        Pkcs15Problem::OidDoFields(fields.len()),
                    ));
                };
                if id.tag() != Tag::ObjectIdentifier {
                    return Err(invalid(F, "OidDO", at, Pkcs15Problem::OidDoId(id.tag())));
                }
                let (oid, wrapped) = oid_of(F, at, id)?;
                obj.oid = Some(oid);
                obj.oid_wrapped = wrapped;
                *value
            }
            _ => inner,
        };
        // ObjectValue: indirect Path (SEQUENCE), or direct [0].
        match value.tag() {
            Tag::Sequence => {
                let bytes = value.to_der().map_err(der_err(F, "path", at))?;
                let p = PathDer::from_der(&bytes).map_err(der_err(F, "path", at))?;
                obj.path = Some(p.into());
            }
            Tag::ContextSpecific { number, .. } if number == TagNumber::N0 => {
                obj.direct = Some(hex::encode_upper(value.value()));
            }
            other => {
                return Err(invalid(
                    F,
                    "ObjectValue",
                    at,
                    Pkcs15Problem::NotObjectValue(other),
                ))
            }
        }
        out.push(obj);
    }
    Ok(out)
}

/// How a PIN is encoded in VERIFY (`PinType`, ISO/IEC 7816-15 / PKCS#15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinType {
    /// `bcd (0)`.
    Bcd,
    /// `ascii-numeric (1)`: the digits as ASCII (what TS 102 221 PINs are).
    AsciiNumeric,
    /// `utf8 (2)`.
    Utf8,
    /// `half-nibble-bcd (3)`.
    HalfNibbleBcd,
    /// `iso9564-1 (4)`.
    Iso9564,
    /// Any other value.
    Other(u8),
}

/// A PIN authentication object of an AODF (`PinAttributes`, ISO/IEC 7816-15
/// §8.8): what a VERIFY of it looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinObject {
    /// The object's label, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The authentication object ID that data objects name (`authId`), hex.
    pub auth_id: String,
    /// The key reference (VERIFY P2; `pinReference`, default 0).
    pub reference: u8,
    /// The encoding.
    pub pin_type: PinType,
    /// Shortest PIN.
    pub min_length: u32,
    /// Length of the VERIFY data (the PIN padded with `pad_char`).
    pub stored_length: u32,
    /// Longest PIN, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// The padding byte (`padChar`; `FF` when absent, as TS 102 221 pads).
    pub pad_char: u8,
    /// Offset of the entry in the AODF.
    pub offset: usize,
}

impl PinObject {
    /// The TS 102 221 default when the card has no AODF: PIN1, the global
    /// key reference `01`, 4 to 8 ASCII digits padded with `FF` to 8 bytes.
    pub fn ts102221_pin1(auth_id: &str) -> PinObject {
        PinObject {
            label: None,
            auth_id: auth_id.to_string(),
            reference: 0x01,
            pin_type: PinType::AsciiNumeric,
            min_length: 4,
            stored_length: 8,
            max_length: Some(8),
            pad_char: 0xFF,
            offset: 0,
        }
    }
}

fn small_unsigned(
    file: &'static str,
    what: &'static str,
    at: usize,
    bytes: &[u8],
) -> Result<u32, Pkcs15Error> {
    // DER INTEGER content: big-endian two's complement, non-negative here.
    if bytes.is_empty() || bytes.len() > 5 || bytes[0] & 0x80 != 0 {
        return Err(invalid(
            file,
            what,
            at,
            Pkcs15Problem::NotSmallUnsigned(bytes.to_vec()),
        ));
    }
    let v = bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    u32::try_from(v).map_err(|_| invalid(file, what, at, Pkcs15Problem::TooLarge(v)))
}

/// Parses EF(AODF) (listed under `[8]`, `A8`, in the ODF): its PIN objects.
/// Other authentication objects (biometric, external) are skipped.
pub fn parse_aodf(data: &[u8]) -> Result<Vec<PinObject>, Pkcs15Error> {
    const F: &str = "EF(AODF)";
    let mut out = Vec::new();
    for (at, bytes) in objects(F, data)? {
        let any = der::AnyRef::from_der(bytes).map_err(der_err(F, "entry", at))?;
        // AuthenticationType: pin is a SEQUENCE; [0] biometric, [1] authKey,
        // [2] external are not PINs.
        if any.tag() != Tag::Sequence {
            continue;
        }
        let parts = elements(F, "entry", at, any.value())?;
        let [common, class, rest @ ..] = parts.as_slice() else {
            return Err(invalid(
                F,
                "entry",
                at,
                Pkcs15Problem::NoAuthenticationAttributes,
            ));
        };
        let mut label = None;
        if common.tag() != Tag::Sequence {
            return Err(invalid(
                F,
                "commonObjectAttributes",
                at,
                Pkcs15Problem::NotSequence(common.tag()),
            ));
        }
        for e in elements(F, "commonObjectAttributes", at, common.value())? {
            if e.tag() == Tag::Utf8String {
                label = Some(utf8(F, "label", at, &e)?);
            }
        }
        if class.tag() != Tag::Sequence {
            return Err(invalid(
                F,
                "CommonAuthenticationObjectAttributes",
                at,
                Pkcs15Problem::NotSequence(class.tag()),
            ));
        }
        let auth_id = elements(F, "CommonAuthenticationObjectAttributes", at, class.value())?
            .into_iter()
            .find(|e| e.tag() == Tag::OctetString)
            .map(|e| hex::encode_upper(e.value()))
            .ok_or_else(|| {
                invalid(
                    F,
                    "CommonAuthenticationObjectAttributes",
                    at,
                    Pkcs15Problem::NoAuthId,
                )
            })?;
        // [0] subClassAttributes (optional), then [1] typeAttributes.
        let t = rest
            .iter()
            .find(|e| {
                e.tag()
                    == Tag::ContextSpecific {
                        constructed: true,
                        number: TagNumber::N1,
                    }
            })
            .ok_or_else(|| invalid(F, "entry", at, Pkcs15Problem::NoTypeAttributes))?;
        let attrs = der::AnyRef::from_der(t.value()).map_err(der_err(F, "PinAttributes", at))?;
        if attrs.tag() != Tag::Sequence {
            return Err(invalid(
                F,
                "PinAttributes",
                at,
                Pkcs15Problem::NotSequence(attrs.tag()),
            ));
        }
        let fields = elements(F, "PinAttributes", at, attrs.value())?;
        // pinFlags BIT STRING, pinType ENUMERATED, minLength, storedLength,
        // maxLength INTEGER OPTIONAL, pinReference [0] DEFAULT 0, padChar
        // OCTET STRING OPTIONAL, lastPinChange, path.
        let mut it = fields.iter().peekable();
        match it.next() {
            Some(f) if f.tag() == Tag::BitString => {}
            other => {
                return Err(invalid(
                    F,
                    "PinAttributes",
                    at,
                    Pkcs15Problem::PinField {
                        field: "pinFlags",
                        found: other.map(|o| o.tag()),
                    },
                ))
            }
        }
        let pin_type = match it.next() {
            Some(f) if f.tag() == Tag::Enumerated => {
                match small_unsigned(F, "pinType", at, f.value())? {
                    0 => PinType::Bcd,
                    1 => PinType::AsciiNumeric,
                    2 => PinType::Utf8,
                    3 => PinType::HalfNibbleBcd,
                    4 => PinType::Iso9564,
                    n => PinType::Other(u8::try_from(n).unwrap_or(u8::MAX)),
                }
            }
            other => {
                return Err(invalid(
                    F,
                    "PinAttributes",
                    at,
                    Pkcs15Problem::PinField {
                        field: "pinType",
                        found: other.map(|o| o.tag()),
                    },
                ))
            }
        };
        let mut integer = |what: &'static str| -> Result<u32, Pkcs15Error> {
            match it.next() {
                Some(f) if f.tag() == Tag::Integer => small_unsigned(F, what, at, f.value()),
                other => Err(invalid(
                    F,
                    "PinAttributes",
                    at,
                    Pkcs15Problem::PinField {
                        field: what,
                        found: other.map(|o| o.tag()),
                    },
                )),
            }
        };
        let min_length = integer("minLength")?;
        let stored_length = integer("storedLength")?;
        let mut pin = PinObject {
            label,
            auth_id,
            reference: 0,
            pin_type,
            min_length,
            stored_length,
            max_length: None,
            pad_char: 0xFF,
            offset: at,
        };
        for f in it {
            match f.tag() {
                Tag::Integer => {
                    pin.max_length = Some(small_unsigned(F, "maxLength", at, f.value())?)
                }
                Tag::ContextSpecific {
                    constructed: false,
                    number,
                } if number == TagNumber::N0 => {
                    let r = small_unsigned(F, "pinReference", at, f.value())?;
                    pin.reference = u8::try_from(r).map_err(|_| {
                        invalid(F, "pinReference", at, Pkcs15Problem::NotKeyReference(r))
                    })?;
                }
                Tag::OctetString => match f.value() {
                    [c] => pin.pad_char = *c,
                    other => {
                        return Err(invalid(
                            F,
                            "padChar",
                            at,
                            Pkcs15Problem::PadCharLength(other.len()),
                        ))
                    }
                },
                _ => {}
            }
        }
        if pin.stored_length == 0 || pin.stored_length > 64 || pin.min_length > pin.stored_length {
            return Err(invalid(
                F,
                "PinAttributes",
                at,
                Pkcs15Problem::UnusableLengths {
                    min: pin.min_length,
                    stored: pin.stored_length,
                },
            ));
        }
        out.push(pin);
    }
    Ok(out)
}

/// An application template of EF(DIR) (tag `61`, ISO/IEC 7816-4 §8.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Application {
    /// The AID (tag `4F`), hex.
    pub aid: String,
    /// The label (tag `50`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The path (tag `51`), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Parses one EF(DIR) record; `None` for an empty (all-`FF`) record.
pub fn parse_dir_record(record: &[u8]) -> Result<Option<Application>, Pkcs15Error> {
    const F: &str = "EF(DIR)";
    let objs = objects(F, record)?;
    let Some((at, bytes)) = objs.first() else {
        return Ok(None);
    };
    let any = der::AnyRef::from_der(bytes).map_err(der_err(F, "record", *at))?;
    let app_tag = |n: u8| Tag::Application {
        constructed: false,
        number: TagNumber::new(n),
    };
    if any.tag()
        != (Tag::Application {
            constructed: true,
            number: TagNumber::new(1),
        })
    {
        return Err(invalid(
            F,
            "record",
            *at,
            Pkcs15Problem::NotApplicationTemplate(any.tag()),
        ));
    }
    let mut app = Application {
        aid: String::new(),
        label: None,
        path: None,
    };
    for e in elements(F, "application template", *at, any.value())? {
        let t = e.tag();
        if t == app_tag(0x0F) {
            app.aid = hex::encode_upper(e.value());
        } else if t == app_tag(0x10) {
            app.label = Some(String::from_utf8_lossy(e.value()).into_owned());
        } else if t == app_tag(0x11) {
            app.path = Some(hex::encode_upper(e.value()));
        }
    }
    if app.aid.is_empty() {
        return Err(invalid(
            F,
            "application template",
            *at,
            Pkcs15Problem::NoAid,
        ));
    }
    Ok(Some(app))
}

/// EF(TokenInfo) (ISO/IEC 7816-15 §8.11): the fields a device reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The version (0 for v1).
    pub version: u32,
    /// The serial number, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// The manufacturer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// The token label (`[0]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Parses EF(TokenInfo).
pub fn parse_token_info(data: &[u8]) -> Result<TokenInfo, Pkcs15Error> {
    const F: &str = "EF(TokenInfo)";
    let objs = objects(F, data)?;
    let Some((at, bytes)) = objs.first() else {
        return Err(invalid(F, "TokenInfo", 0, Pkcs15Problem::Empty));
    };
    let seq = der::AnyRef::from_der(bytes).map_err(der_err(F, "TokenInfo", *at))?;
    if seq.tag() != Tag::Sequence {
        return Err(invalid(
            F,
            "TokenInfo",
            *at,
            Pkcs15Problem::NotSequence(seq.tag()),
        ));
    }
    let fields = elements(F, "TokenInfo", *at, seq.value())?;
    let version = fields
        .first()
        .ok_or_else(|| invalid(F, "TokenInfo", *at, Pkcs15Problem::NoVersion))
        .and_then(|v| u32::try_from(*v).map_err(der_err(F, "version", *at)))?;
    let mut info = TokenInfo {
        version,
        serial_number: None,
        manufacturer: None,
        label: None,
    };
    for e in &fields[1..] {
        match e.tag() {
            Tag::OctetString => info.serial_number = Some(hex::encode_upper(e.value())),
            Tag::Utf8String => info.manufacturer = Some(utf8(F, "manufacturerID", *at, e)?),
            Tag::ContextSpecific {
                constructed: false,
                number,
            } if number == TagNumber::N0 => {
                info.label = Some(String::from_utf8_lossy(e.value()).into_owned())
            }
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::scripted::h;

    #[test]
    fn odf_lists_dodf_path_with_padding() {
        let odf = parse_odf(&h("A706300404026430 FFFFFFFF")).unwrap();
        assert_eq!(odf.len(), 1);
        assert_eq!(odf[0].kind, OdfKind::DataObjects);
        assert_eq!(odf[0].path.path, "6430");
        let two = parse_odf(&h("A706300404024407 A506300404024404 FFFFFF")).unwrap();
        assert_eq!(two[1].kind, OdfKind::TrustedCertificates);
    }

    #[test]
    fn oid_do_entry_with_twice_wrapped_oid() {
        let d = parse_dodf(&h(
            "A127300030110C0F4C774D324D20426F6F747374726170A110300E06060604672B0901300404026432",
        ))
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].form, DataObjectForm::OidDo);
        assert_eq!(d[0].application.as_deref(), Some("LwM2M Bootstrap"));
        assert_eq!(d[0].oid, Some(OID_LWM2M_BOOTSTRAP));
        assert!(d[0].oid_wrapped);
        assert_eq!(d[0].path.as_ref().unwrap().path, "6432");
    }

    #[test]
    fn oid_do_entry_with_plain_oid_and_opaque_entry() {
        // oidDO with 06 03 67 2B 09 01.
        let d = parse_dodf(&h("A110 3000 3000 A10A 3008 0604672B0901 3000")).unwrap_err();
        // The value is an empty SEQUENCE: no path inside.
        assert!(d.to_string().contains("EF(DODF): path at offset 0"), "{d}");
        let ok = parse_dodf(&h("A114 3000 3000 A10E 300C 0604672B0901 3004 04026432")).unwrap();
        assert_eq!(ok[0].oid, Some(OID_LWM2M_BOOTSTRAP));
        assert!(!ok[0].oid_wrapped);
        // Opaque DO: label, applicationOID 2.23.43.7.1, path 6433.
        let op = parse_dodf(&h("3014 3008 0C06444D2D425354 3008 0C00 0604672B0701")).unwrap_err();
        assert!(op.to_string().contains("no typeAttributes"), "{op}");
        let op = parse_dodf(&h(
            "301C 3008 0C06444D2D425354 3008 0C00 0604672B0701 A106 3004 04026433 FFFF",
        ))
        .unwrap();
        assert_eq!(op[0].form, DataObjectForm::Opaque);
        assert_eq!(op[0].label.as_deref(), Some("DM-BST"));
        assert_eq!(op[0].oid, Some(OID_DM_BOOTSTRAP));
        assert_eq!(op[0].path.as_ref().unwrap().path, "6433");
    }

    #[test]
    fn truncated_and_garbage_dodf_are_refused_with_offsets() {
        let e = parse_dodf(&h("A127300030110C0F4C77")).unwrap_err();
        assert!(
            e.to_string().contains("at offset 0") && e.to_string().contains("truncated"),
            "{e}"
        );
        let e = parse_dodf(&h("A106300030003000 0401")).unwrap_err();
        assert!(e.to_string().starts_with("EF(DODF): "), "{e}");
        let e = parse_odf(&h("3006300404026430")).unwrap_err();
        assert!(e.to_string().contains("context tag"), "{e}");
    }

    #[test]
    fn aodf_pin_attributes_give_the_verify_parameters() {
        // PIN "PIN1", authId 01: flags, ascii-numeric, min 4, stored 8, max 8,
        // reference [0] 01, padChar FF, path 3F00.
        let a = parse_aodf(&h(
            "302D 3006 0C0450494E31 3003 040101 A11E 301C 0302020C 0A0101 020104 020108 020108 \
             800101 0401FF 30040402 3F00 FFFF",
        ))
        .unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].label.as_deref(), Some("PIN1"));
        assert_eq!(a[0].auth_id, "01");
        assert_eq!(a[0].reference, 1);
        assert_eq!(a[0].pin_type, PinType::AsciiNumeric);
        assert_eq!(
            (a[0].min_length, a[0].stored_length, a[0].max_length),
            (4, 8, Some(8))
        );
        assert_eq!(a[0].pad_char, 0xFF);
        // pinReference absent: DEFAULT 0; padChar 00.
        let b = parse_aodf(&h(
            "301B 3000 3003 040102 A112 3010 0302020C 0A0102 020106 020110 040100",
        ))
        .unwrap();
        assert_eq!(
            (b[0].reference, b[0].pad_char, b[0].stored_length),
            (0, 0, 16)
        );
        assert_eq!(b[0].pin_type, PinType::Utf8);
        // No authId, truncated, stored shorter than min.
        let e = parse_aodf(&h("3012 3000 3000 A10C 300A 0302020C 0A0101 020104")).unwrap_err();
        assert!(e.to_string().contains("no authId"), "{e}");
        let e = parse_aodf(&h("3020 3000 3003 0401")).unwrap_err();
        assert!(e.to_string().starts_with("EF(AODF): "), "{e}");
        let e = parse_aodf(&h(
            "3018 3000 3003 040101 A10F 300D 0302020C 0A0101 020109 020108",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("min 9 stored 8"), "{e}");
    }

    #[test]
    fn dir_record_and_token_info() {
        let app = parse_dir_record(&h(
            "61194f0ca000000063504b43532d313550094d49445066696c6573ffffffffffffffffffffff",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(app.aid, "A000000063504B43532D3135");
        assert_eq!(app.label.as_deref(), Some("MIDPfiles"));
        assert_eq!(parse_dir_record(&[0xFF; 20]).unwrap(), None);
        let ti = parse_token_info(&h("3011 020100 0403010203 0C04646D7363 030100 FFFF")).unwrap();
        assert_eq!(ti.version, 0);
        assert_eq!(ti.serial_number.as_deref(), Some("010203"));
        assert_eq!(ti.manufacturer.as_deref(), Some("dmsc"));
    }

    #[test]
    fn problems_carry_their_data_and_read_as_before() {
        // A 5-byte object declared where 2 bytes are left.
        let e = parse_odf(&h("A805 3003")).unwrap_err();
        assert_eq!(
            e,
            Pkcs15Error::Invalid {
                file: "EF(ODF)",
                what: "object",
                offset: 0,
                problem: Pkcs15Problem::Truncated {
                    declared: 5,
                    left: 2
                },
            }
        );
        assert_eq!(
            e.to_string(),
            "EF(ODF): object at offset 0: 5 bytes declared, 2 left in the file (truncated)"
        );
        // pinType missing after pinFlags.
        let e = parse_aodf(&h("3011 3000 3003 040101 A108 3006 0302020C 0C00")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "EF(AODF): PinAttributes at offset 0: pinType: found UTF8String"
        );
        let Pkcs15Error::Invalid { problem, .. } = e else {
            panic!("{e:?}");
        };
        assert_eq!(
            problem,
            Pkcs15Problem::PinField {
                field: "pinType",
                found: Some(Tag::Utf8String)
            }
        );
        let texts = [
            (
                Pkcs15Problem::PinField {
                    field: "minLength",
                    found: None,
                },
                "minLength: found nothing",
            ),
            (
                Pkcs15Problem::NotSmallUnsigned(vec![0x80, 0x01]),
                "8001 is not a small non-negative integer",
            ),
            (Pkcs15Problem::TooLarge(1 << 32), "4294967296 is too large"),
            (Pkcs15Problem::NotSequence(Tag::Integer), "found INTEGER"),
            (Pkcs15Problem::NoTypeAttributes, "no typeAttributes [1]"),
            (Pkcs15Problem::Empty, "the file is empty"),
            (
                Pkcs15Problem::UnusableLengths { min: 9, stored: 8 },
                "lengths min 9 stored 8 are not usable (stored 1 to 64, min at most stored)",
            ),
        ];
        for (problem, text) in texts {
            assert_eq!(problem.to_string(), text);
        }
    }
}
