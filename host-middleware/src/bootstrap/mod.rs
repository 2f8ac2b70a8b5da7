//! HTTP bootstrap verified with the card's key ("HTTP Bootstrap SC Signature").
//!
//! The Management Authority MACs the bootstrap packet with a key it shares
//! with the card ([`compute_mac`]) and sends the MAC in the HTTP Content-Type
//! (`application/vnd.syncml.dm+xml; SEC=NETWORKID; MAC=<hex>`,
//! [`content_type`]). The device parses the header ([`parse_content_type`]),
//! has the card verify the MAC with its bootstrap key ([`verify_packet`]: the
//! key never leaves the card; every failure is counted and audited there),
//! asks the user, and writes the TNDS content into the device tree
//! ([`write_bootstrap_content`]). [`verify_and_apply`] does all of it in order
//! and writes nothing unless the card verified the MAC and the user accepted.
//! docs/bootstrap.md describes the flow.

pub mod syncml;
pub mod wbxml;

use std::path::{Path, PathBuf};

use crate::device_tree::{DeviceTree, DirectoryTree, LastCard, Origin, TreeChange};
use crate::mo::MgmtTree;

use dmsc_card_model::commands::{BootstrapKeyValue, ObjectValue};
use dmsc_card_model::objects::{MacAlgorithm, ObjectRef};
use zeroize::Zeroizing;

use crate::{CardCommands, HostError};

/// The largest bootstrap packet the card verifies (64 KiB).
pub const MAX_PACKET: usize = 64 * 1024;

/// What is wrong with a bootstrap Content-Type header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    /// The media type is neither of the OMA DM bootstrap types.
    #[error(
        "media type {found:?} is not {} or {}",
        MediaType::Xml.mime(),
        MediaType::Wbxml.mime()
    )]
    MediaType {
        /// The media type given.
        found: String,
    },
    /// A parameter without `=`.
    #[error("parameter {parameter:?} has no '='")]
    NoEquals {
        /// The parameter as given.
        parameter: String,
    },
    /// A parameter given twice.
    #[error("{name}= appears twice")]
    Repeated {
        /// The parameter (`SEC` or `MAC`).
        name: &'static str,
    },
    /// A SEC method whose key is derived from a user PIN.
    #[error(
        "SEC={value} needs a key derived from a user PIN, which the card does not hold; \
         supported: NETWORKID, NETWPIN"
    )]
    UserPin {
        /// The SEC value given.
        value: String,
    },
    /// A SEC method that OMA DM does not define.
    #[error("unknown SEC value {value:?}; supported: NETWORKID, NETWPIN")]
    UnknownSec {
        /// The SEC value given.
        value: String,
    },
    /// The MAC is not hex.
    #[error("MAC={value:?} is not hex")]
    MacNotHex {
        /// The MAC value given.
        value: String,
    },
    /// `MAC=` with nothing after it.
    #[error("MAC= is empty")]
    MacEmpty,
    /// A required parameter is missing.
    #[error("no {name}= parameter")]
    Missing {
        /// The parameter (`SEC` or `MAC`).
        name: &'static str,
    },
}

/// Errors of the bootstrap operations.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The Content-Type header does not carry a usable bootstrap MAC.
    #[error("bad bootstrap Content-Type {header:?}: {problem}")]
    BadHeader {
        /// The header as given.
        header: String,
        /// What is wrong with it.
        #[source]
        problem: HeaderProblem,
    },
    /// The MAC does not have the length of the algorithm.
    #[error("the MAC is {got} bytes long; {alg} MACs are {expected} bytes")]
    MacLength {
        /// The algorithm.
        alg: &'static str,
        /// Its MAC length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The MAC has the length of no algorithm the card knows.
    #[error(
        "the MAC is {got} bytes long; MACs are 16 (aes-cmac), 20 (hmac-sha1) or 32 \
         (hmac-sha256) bytes"
    )]
    MacLengthUnknown {
        /// The length given.
        got: usize,
    },
    /// The key does not fit the algorithm.
    #[error("a {alg} key must be {expected}; this one is {got} bytes (the key is not shown)")]
    KeyLength {
        /// The algorithm.
        alg: &'static str,
        /// The lengths allowed.
        expected: &'static str,
        /// The length given.
        got: usize,
    },
    /// The packet is larger than the card verifies.
    #[error("the bootstrap packet is {0} bytes; the card verifies at most {MAX_PACKET} bytes")]
    TooLarge(usize),
    /// The verified content is not TNDS the device can apply.
    #[error("the bootstrap content is not a TNDS document: {0}")]
    BadContent(#[source] ContentError),
    /// The content is an OMA DM (SyncML) message that is not a bootstrap
    /// message the device can apply.
    #[error("the bootstrap content is not an OMA DM bootstrap message: {0}")]
    BadMessage(#[source] crate::bootstrap::syncml::SyncmlError),
    /// Writing into the device tree failed.
    #[error("the device tree: {0}")]
    DeviceTree(#[from] crate::device_tree::TreeError),
    /// The card failed or refused.
    #[error("{0}")]
    Card(#[from] HostError),
}

/// Why bootstrap content is not a TNDS document the device can apply.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// `application/vnd.syncml.dm+xml` content that is not UTF-8.
    #[error("not UTF-8 (byte {at})")]
    NotUtf8 {
        /// The offset of the first invalid byte.
        at: usize,
    },
    /// WBXML content that does not decode.
    #[error("{0}")]
    Wbxml(#[from] crate::bootstrap::wbxml::WbxmlError),
    /// The XML is not a TNDS `MgmtTree` (strictly).
    #[error("{0}")]
    Tnds(#[from] crate::mo::MoError),
    /// The document has no node to write.
    #[error("the TNDS document has no node")]
    NoNode,
    /// The device tree does not hold the first node after the change.
    #[error("{uri} is not in the device tree after the change")]
    NotWritten {
        /// The node's URI.
        uri: String,
    },
}

/// The security method named by `SEC=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecMethod {
    /// `NETWORKID`: a key shared by the network (the Management Authority) and
    /// the card.
    NetworkId,
    /// `NETWPIN`: OMA's name for the same network-shared secret.
    NetwPin,
}

impl SecMethod {
    /// The `SEC=` value.
    pub fn name(self) -> &'static str {
        match self {
            SecMethod::NetworkId => "NETWORKID",
            SecMethod::NetwPin => "NETWPIN",
        }
    }
}

/// The media type of the bootstrap packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/vnd.syncml.dm+xml`: TNDS as XML text.
    Xml,
    /// `application/vnd.syncml.dm+wbxml`: TNDS encoded in WBXML.
    Wbxml,
}

impl MediaType {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            MediaType::Xml => "application/vnd.syncml.dm+xml",
            MediaType::Wbxml => "application/vnd.syncml.dm+wbxml",
        }
    }
}

/// What a bootstrap Content-Type header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapHeader {
    /// The packet's media type.
    pub media_type: MediaType,
    /// The `SEC=` method.
    pub sec: SecMethod,
    /// The `MAC=` value.
    pub mac: Vec<u8>,
}

/// The Content-Type for a packet with `mac`, e.g.
/// `application/vnd.syncml.dm+wbxml; SEC=NETWORKID; MAC=<HEX>`.
pub fn content_type(media: MediaType, sec: SecMethod, mac: &[u8]) -> String {
    format!(
        "{}; SEC={}; MAC={}",
        media.mime(),
        sec.name(),
        hex::encode_upper(mac)
    )
}

/// Parses a bootstrap Content-Type (a `Content-Type:` prefix is allowed;
/// parameter names are case-insensitive, values may be quoted).
pub fn parse_content_type(header: &str) -> Result<BootstrapHeader, BootstrapError> {
    let bad = |problem| BootstrapError::BadHeader {
        header: header.to_string(),
        problem,
    };
    let mut text = header.trim();
    if let Some(rest) = text
        .get(..13)
        .filter(|p| p.eq_ignore_ascii_case("content-type:"))
        .and_then(|_| text.get(13..))
    {
        text = rest.trim();
    }
    let mut parts = text.split(';').map(str::trim);
    let mime = parts.next().unwrap_or_default();
    let media_type = [MediaType::Xml, MediaType::Wbxml]
        .into_iter()
        .find(|m| m.mime().eq_ignore_ascii_case(mime))
        .ok_or_else(|| {
            bad(HeaderProblem::MediaType {
                found: mime.to_string(),
            })
        })?;
    let (mut sec, mut mac) = (None, None);
    for p in parts {
        if p.is_empty() {
            continue;
        }
        let (name, value) = p.split_once('=').ok_or_else(|| {
            bad(HeaderProblem::NoEquals {
                parameter: p.to_string(),
            })
        })?;
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_uppercase().as_str() {
            "SEC" => {
                if sec.is_some() {
                    return Err(bad(HeaderProblem::Repeated { name: "SEC" }));
                }
                sec = Some(match value.to_ascii_uppercase().as_str() {
                    "NETWORKID" => SecMethod::NetworkId,
                    "NETWPIN" => SecMethod::NetwPin,
                    "USERPIN" | "USERNETWPIN" | "USERPINMAC" => {
                        return Err(bad(HeaderProblem::UserPin {
                            value: value.to_string(),
                        }))
                    }
                    _ => {
                        return Err(bad(HeaderProblem::UnknownSec {
                            value: value.to_string(),
                        }))
                    }
                });
            }
            "MAC" => {
                if mac.is_some() {
                    return Err(bad(HeaderProblem::Repeated { name: "MAC" }));
                }
                let bytes = hex::decode(value).map_err(|_| {
                    bad(HeaderProblem::MacNotHex {
                        value: value.to_string(),
                    })
                })?;
                if bytes.is_empty() {
                    return Err(bad(HeaderProblem::MacEmpty));
                }
                mac = Some(bytes);
            }
            _ => {} // other parameters (e.g. charset) are allowed and ignored
        }
    }
    Ok(BootstrapHeader {
        media_type,
        sec: sec.ok_or_else(|| bad(HeaderProblem::Missing { name: "SEC" }))?,
        mac: mac.ok_or_else(|| bad(HeaderProblem::Missing { name: "MAC" }))?,
    })
}

/// Checks that `mac` has the full length of `alg`, or (`alg` unknown) of
/// one of the algorithms: a wrong length is refused before the card sees it.
pub fn check_mac_length_for(alg: Option<MacAlgorithm>, mac: &[u8]) -> Result<(), BootstrapError> {
    match alg {
        Some(alg) => check_mac_length(alg, mac),
        None if MacAlgorithm::ALL.iter().any(|a| a.mac_len() == mac.len()) => Ok(()),
        None => Err(BootstrapError::MacLengthUnknown { got: mac.len() }),
    }
}

/// Checks that `mac` has the full length of `alg`.
pub fn check_mac_length(alg: MacAlgorithm, mac: &[u8]) -> Result<(), BootstrapError> {
    if mac.len() != alg.mac_len() {
        return Err(BootstrapError::MacLength {
            alg: alg.name(),
            expected: alg.mac_len(),
            got: mac.len(),
        });
    }
    Ok(())
}

fn check_key(alg: MacAlgorithm, key: &[u8]) -> Result<(), BootstrapError> {
    if !alg.key_len_ok(key.len()) {
        return Err(BootstrapError::KeyLength {
            alg: alg.name(),
            expected: match alg {
                MacAlgorithm::AesCmac => "16 or 32 bytes",
                _ => "16 to 64 bytes",
            },
            got: key.len(),
        });
    }
    Ok(())
}

/// The MAC of a packet (the authority's side; the card computes the same).
pub fn compute_mac(alg: MacAlgorithm, key: &[u8], data: &[u8]) -> Result<Vec<u8>, BootstrapError> {
    use hmac::{Hmac, Mac};
    check_key(alg, key)?;
    let bad_key = || BootstrapError::KeyLength {
        alg: alg.name(),
        expected: "16 or 32 bytes",
        got: key.len(),
    };
    Ok(match alg {
        MacAlgorithm::AesCmac => {
            use cmac::Cmac;
            if key.len() == 16 {
                let mut m =
                    <Cmac<aes::Aes128> as Mac>::new_from_slice(key).map_err(|_| bad_key())?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            } else {
                let mut m =
                    <Cmac<aes::Aes256> as Mac>::new_from_slice(key).map_err(|_| bad_key())?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
        MacAlgorithm::HmacSha256 => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).map_err(|_| bad_key())?;
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        MacAlgorithm::HmacSha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).map_err(|_| bad_key())?;
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    })
}

/// Stores a bootstrap key on the card (an authority; send it under a
/// security level with C-DECRYPTION). The card never returns it.
pub fn provision_key<C: CardCommands + ?Sized>(
    card: &mut C,
    key_id: u8,
    alg: MacAlgorithm,
    key: &[u8],
) -> Result<(), BootstrapError> {
    check_key(alg, key)?;
    card.put_object(
        &ObjectRef::BootstrapKey(key_id),
        &ObjectValue::BootstrapKey(BootstrapKeyValue {
            algorithm: alg,
            key: Some(Zeroizing::new(key.to_vec())),
        }),
        None,
    )?;
    Ok(())
}

/// The card verifies `mac` over `packet` with bootstrap key `key_id`:
/// `Ok(true)` verified, `Ok(false)` not (counted and audited by the card).
pub fn verify_packet<C: CardCommands + ?Sized>(
    card: &mut C,
    key_id: u8,
    packet: &[u8],
    mac: &[u8],
) -> Result<bool, BootstrapError> {
    if packet.len() > MAX_PACKET {
        return Err(BootstrapError::TooLarge(packet.len()));
    }
    Ok(card.verify_mac(key_id, packet, mac)?)
}

/// Verified bootstrap content, ready to be written into the device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapContent {
    /// The TNDS document (XML text); for an OMA DM message, the TNDS form of
    /// the tree its `Add`/`Replace` items describe.
    pub xml: String,
    /// The root URIs of its top-level nodes, for the consent prompt.
    pub nodes: Vec<String>,
}

/// Checks that `packet` is a TNDS document or an OMA DM (SyncML DM 1.2)
/// bootstrap message the device can apply (WBXML is decoded to XML first; a
/// TNDS document is parsed as `MgmtTree`, strictly; a message's `Add` and
/// `Replace` items become the same tree, see [`crate::bootstrap::syncml`]).
pub fn decode_content(media: MediaType, packet: &[u8]) -> Result<BootstrapContent, BootstrapError> {
    let (xml, syncml) = match media {
        MediaType::Xml => {
            let text = std::str::from_utf8(packet).map_err(|e| {
                BootstrapError::BadContent(ContentError::NotUtf8 {
                    at: e.valid_up_to(),
                })
            })?;
            let syncml = crate::bootstrap::syncml::is_syncml_xml(text).then_some("SyncML DM XML");
            (text.to_string(), syncml)
        }
        MediaType::Wbxml => {
            let d = crate::bootstrap::wbxml::decode(packet)
                .map_err(|e| BootstrapError::BadContent(e.into()))?;
            let syncml = (d.vocabulary == crate::bootstrap::wbxml::Vocabulary::SyncMl)
                .then_some("SyncML DM WBXML (as XML)");
            (d.xml, syncml)
        }
    };
    let (xml, tree) = match syncml {
        Some(format) => {
            let tree = crate::bootstrap::syncml::bootstrap_tree(&xml, format)
                .map_err(BootstrapError::BadMessage)?;
            (tree.to_tnds(), tree)
        }
        None => {
            let tree =
                MgmtTree::from_tnds(&xml).map_err(|e| BootstrapError::BadContent(e.into()))?;
            (xml, tree)
        }
    };
    let nodes: Vec<String> = tree.split().into_iter().map(|(uri, _)| uri).collect();
    if nodes.is_empty() {
        return Err(BootstrapError::BadContent(ContentError::NoNode));
    }
    Ok(BootstrapContent { xml, nodes })
}

/// Writes accepted bootstrap content into the device tree (docs/device-tree.md):
/// every top-level node of the TNDS document becomes an MO of the device's own
/// configuration (origin `device`), all in one atomic change. Returns the file
/// of the first MO in the tree now in force.
pub fn write_bootstrap_content(dir: &Path, xml: &str) -> Result<PathBuf, BootstrapError> {
    let tree = MgmtTree::from_tnds(xml).map_err(|e| BootstrapError::BadContent(e.into()))?;
    let roots = tree.split();
    let first = roots
        .first()
        .map(|(uri, _)| uri.clone())
        .ok_or(BootstrapError::BadContent(ContentError::NoNode))?;
    let mut device = DirectoryTree::open(dir)?;
    let change = TreeChange {
        put: roots
            .into_iter()
            .map(|(uri, mo)| (uri, mo, Origin::Device))
            .collect(),
        remove: Vec::new(),
        last_card: LastCard::Keep,
    };
    device.apply(&change)?;
    device
        .mo_path(&first)?
        .ok_or(BootstrapError::BadContent(ContentError::NotWritten {
            uri: first,
        }))
}

/// How a bootstrap ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// Verified by the card, accepted by the user, written here.
    Applied(PathBuf),
    /// The card says the MAC does not verify. Nothing was written.
    MacInvalid,
    /// The user declined. Nothing was written.
    Declined,
}

/// The whole device side: the card verifies the MAC, the content is checked,
/// `consent` is asked, and only then the content is written into `device_dir`.
pub fn verify_and_apply<C: CardCommands + ?Sized>(
    card: &mut C,
    key_id: u8,
    media: MediaType,
    packet: &[u8],
    mac: &[u8],
    device_dir: &Path,
    consent: &mut dyn FnMut(&BootstrapContent) -> bool,
) -> Result<BootstrapOutcome, BootstrapError> {
    if !verify_packet(card, key_id, packet, mac)? {
        return Ok(BootstrapOutcome::MacInvalid);
    }
    let content = decode_content(media, packet)?;
    if !consent(&content) {
        return Ok(BootstrapOutcome::Declined);
    }
    let path = write_bootstrap_content(device_dir, &content.xml)?;
    Ok(BootstrapOutcome::Applied(path))
}

#[cfg(test)]
mod mac_length_tests {
    use super::*;

    #[test]
    fn a_mac_of_no_known_length_is_refused_without_an_algorithm() {
        for len in [16, 20, 32] {
            check_mac_length_for(None, &vec![0; len]).expect("a known length");
        }
        for len in [0, 8, 15, 31, 64] {
            let e = check_mac_length_for(None, &vec![0; len]).unwrap_err();
            assert!(e.to_string().contains(&format!("{len} bytes")), "{e}");
        }
        assert!(check_mac_length_for(Some(MacAlgorithm::AesCmac), &[0; 32]).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad header names what is wrong as a typed problem, in the same words.
    #[test]
    fn header_problems_are_typed() {
        let problem = |h: &str| match parse_content_type(h) {
            Err(BootstrapError::BadHeader { header, problem }) => {
                assert_eq!(header, h);
                problem
            }
            other => panic!("{h}: {other:?}"),
        };
        let xml = "application/vnd.syncml.dm+xml";
        let cases = [
            (
                format!("{xml}; SEC=NETWORKID"),
                HeaderProblem::Missing { name: "MAC" },
            ),
            (
                format!("{xml}; MAC=00"),
                HeaderProblem::Missing { name: "SEC" },
            ),
            (
                format!("{xml}; SEC=NETWORKID; SEC=NETWPIN; MAC=00"),
                HeaderProblem::Repeated { name: "SEC" },
            ),
            (
                format!("{xml}; SEC=NETWORKID; MAC="),
                HeaderProblem::MacEmpty,
            ),
            (
                format!("{xml}; SEC=NETWORKID; MAC=XY"),
                HeaderProblem::MacNotHex { value: "XY".into() },
            ),
            (
                format!("{xml}; SEC=USERPIN; MAC=00"),
                HeaderProblem::UserPin {
                    value: "USERPIN".into(),
                },
            ),
            (
                "text/plain; SEC=NETWORKID; MAC=00".to_string(),
                HeaderProblem::MediaType {
                    found: "text/plain".into(),
                },
            ),
            (
                format!("{xml}; SEC"),
                HeaderProblem::NoEquals {
                    parameter: "SEC".into(),
                },
            ),
        ];
        for (header, want) in cases {
            assert_eq!(problem(&header), want, "{header}");
        }
        let e = parse_content_type("text/plain; SEC=NETWORKID; MAC=00").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad bootstrap Content-Type \"text/plain; SEC=NETWORKID; MAC=00\": media type \
             \"text/plain\" is not application/vnd.syncml.dm+xml or \
             application/vnd.syncml.dm+wbxml"
        );
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("media type \"text/plain\" is not application/vnd.syncml.dm+xml or application/vnd.syncml.dm+wbxml")
        );
    }
    use crate::bootstrap::wbxml::WbxmlError;

    #[test]
    fn content_errors_name_what_and_where() {
        let e = decode_content(MediaType::Wbxml, &[0x09]).unwrap_err();
        assert!(
            matches!(
                e,
                BootstrapError::BadContent(ContentError::Wbxml(WbxmlError::Version(9)))
            ),
            "{e:?}"
        );
        let e = decode_content(MediaType::Xml, b"<MgmtTree>\xFF").unwrap_err();
        assert!(
            matches!(
                e,
                BootstrapError::BadContent(ContentError::NotUtf8 { at: 10 })
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the bootstrap content is not a TNDS document: not UTF-8 (byte 10)"
        );
    }
}
