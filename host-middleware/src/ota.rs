//! Over-the-air updates relayed by the device (docs/security.md, "OTA").
//!
//! The authority precomputes a whole SCP03 session for one card: the card's
//! challenge is pseudo-random (KDF of the static ENC key over the card's next
//! sequence counter and the AID), so the authority knows it in advance. The
//! script is INITIALIZE UPDATE (with the authority's host challenge), EXTERNAL
//! AUTHENTICATE and the commands wrapped at C-MAC + C-DECRYPTION. The device
//! relays the APDUs and checks status words only: it cannot read the data
//! (encrypted) nor change a byte (MAC), and a replay fails because the
//! card's counter has moved on.

use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::commands::{ObjectValue, Request, AID};
use dmsc_card_model::objects::{Acl, ObjectRef};
use dmsc_card_model::scp03::{
    self, InitializeUpdateResponse, SMode, Scp03Error, SecureChannel, SecurityLevel, StaticKeys,
};
use serde::{Deserialize, Serialize};

use crate::error::HostError;
use crate::fleet::diversify::CardAuthorityKeys;
use crate::mo::{self, MgmtTree};
use crate::session::CardCommands;

/// The schema version of OTA requests and scripts.
pub const OTA_SCHEMA_VERSION: u32 = 1;

/// The highest SCP03 sequence counter (24 bits).
pub const MAX_SEQUENCE_COUNTER: u32 = 0xFF_FFFF;

/// What the authority needs to know about a card to build a script for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaRequest {
    /// [`OTA_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The card ID, hex (32 digits).
    pub card_id: String,
    /// The key version number of the authority's key set on the card.
    pub key_version: u8,
    /// The card's SCP03 `i` parameter.
    pub scp_i: u8,
    /// The card's current sequence counter; the script uses the next value.
    pub sequence_counter: u32,
}

/// A protected script for one card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaScript {
    /// [`OTA_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The card the script is for, hex. The device refuses to relay it to
    /// another card; the card itself refuses it (its keys differ).
    pub card_id: String,
    /// The authority's key version.
    pub key_version: u8,
    /// The sequence counter the card must reach with this script's
    /// INITIALIZE UPDATE.
    pub sequence_counter: u32,
    /// The SCP03 security level of the session.
    pub security_level: u8,
    /// What the wrapped commands do, for people (e.g. `put mo:./DMAcc`).
    pub operations: Vec<String>,
    /// The command APDUs, hex: INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, the
    /// wrapped commands.
    pub apdus: Vec<String>,
}

/// One change the script makes on the card.
#[derive(Debug, Clone)]
pub enum OtaOperation {
    /// Store each top-level node of the tree as an MO record (ACL optional).
    PutMo(MgmtTree, Option<Acl>),
    /// Delete an MO record.
    DeleteMo(String),
    /// Replace the enterprise policy with a signed envelope
    /// ([`crate::policy::signing::SignedPolicy::encode`]); the device's next
    /// enforcement checks it against the enterprise key on the card.
    PutPolicy(Vec<u8>),
}

/// Why building or relaying a script failed.
#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    /// The card or the transport failed.
    #[error("{0}")]
    Card(#[from] HostError),
    /// SCP03 computation failed (key lengths, challenge size…).
    #[error("SCP03: {0}")]
    Scp03(#[source] Scp03Error),
    /// The operating system gave no randomness for the host challenge.
    #[error("SCP03: no operating-system randomness for the host challenge: {0}")]
    NoRandomness(#[source] getrandom::Error),
    /// A command of the script cannot be encoded as an APDU.
    #[error("SCP03: cannot encode a command APDU: {0}")]
    Apdu(#[source] dmsc_card_model::apdu::ApduError),
    /// The request or script is not valid.
    #[error("invalid OTA {what}: {problem}")]
    Invalid {
        /// `request` or `script`.
        what: &'static str,
        /// What is wrong.
        #[source]
        problem: OtaProblem,
    },
    /// The script is for another card (checked before anything is sent).
    #[error(
        "the script is for card {expected}, but the card present is {found}; nothing was sent"
    )]
    OtherCard {
        /// The script's card.
        expected: String,
        /// The card present.
        found: String,
    },
    /// The card refused an APDU of the script; the earlier ones were applied.
    #[error("the card refused APDU {index} of the script ({step}) with SW {sw:04X}{}",
        if *.index <= 2 { " (replayed, altered, or for another card?); the card is unchanged" } else { "" })]
    Refused {
        /// 1-based position in the script.
        index: usize,
        /// What the APDU was.
        step: String,
        /// The status word.
        sw: u16,
    },
}

/// What is wrong with an OTA request or script ([`OtaError::Invalid`]).
#[derive(Debug, thiserror::Error)]
pub enum OtaProblem {
    /// The card offers no sequence counter to precompute its challenge from.
    #[error("the card does not use pseudo-random challenges (no sequence counter)")]
    NoSequenceCounter,
    /// The card ID is not hex.
    #[error("card_id '{card_id}': {reason}")]
    CardIdNotHex {
        /// The card ID as given.
        card_id: String,
        /// Why (`hex`'s error, which is not a `std` error without its `std` feature).
        reason: hex::FromHexError,
    },
    /// The card ID is not 16 bytes.
    #[error("card_id '{card_id}' is not 16 bytes")]
    CardIdLength {
        /// The card ID as given.
        card_id: String,
    },
    /// The card's keys cannot be derived for this card ID.
    #[error("card_id '{card_id}': {source}")]
    CardKeys {
        /// The card ID as given.
        card_id: String,
        /// Why.
        #[source]
        source: crate::fleet::diversify::DiversifyError,
    },
    /// A request of another schema version.
    #[error("schema_version {0}")]
    SchemaVersion(u32),
    /// The security level does not protect the script's commands.
    #[error("security level {0:02X} lacks C-MAC + C-DECRYPTION")]
    LevelLacksEncryption(u8),
    /// The card's sequence counter cannot be advanced.
    #[error("the card's sequence counter is exhausted")]
    CounterExhausted,
    /// The MO tree to put breaks a TNDS rule.
    #[error("MO tree: {0}")]
    MoTree(#[source] mo::MoError),
    /// A script of another schema version, or without the handshake.
    #[error("unknown schema_version or fewer than two APDUs")]
    ScriptShape,
    /// An APDU of the script is not hex.
    #[error("APDU {index}: {reason}")]
    ApduNotHex {
        /// 1-based position in the script.
        index: usize,
        /// Why (`hex`'s error, not a `std` error here).
        reason: hex::FromHexError,
    },
    /// An APDU of the script does not decode.
    #[error("APDU {index}: {source}")]
    ApduMalformed {
        /// 1-based position in the script.
        index: usize,
        /// Why.
        #[source]
        source: dmsc_card_model::apdu::ApduError,
    },
}

/// Device side: SELECT and a plain INITIALIZE UPDATE to learn the card ID and
/// sequence counter (the handshake is abandoned). The card offers the value
/// after its current counter and spends it only at a successful EXTERNAL
/// AUTHENTICATE, so this spends nothing: the request reports the current
/// value, and the script uses the offered one. The result goes to the authority.
pub fn read_request<C: CardCommands + ?Sized>(
    card: &mut C,
    key_version: u8,
) -> Result<OtaRequest, OtaError> {
    let info = card.select()?;
    let mut challenge = vec![0u8; SMode::from_i(info.scp_i).size()];
    getrandom::getrandom(&mut challenge).map_err(OtaError::NoRandomness)?;
    let iu = scp03::initialize_update(key_version, &challenge).map_err(OtaError::Scp03)?;
    let rsp = card.transmit(&iu)?;
    let data = crate::error::check_status(&iu, rsp)?;
    let parsed = InitializeUpdateResponse::decode(&data).map_err(OtaError::Scp03)?;
    let counter = parsed.sequence_counter.ok_or(OtaError::Invalid {
        what: "request",
        problem: OtaProblem::NoSequenceCounter,
    })?;
    // Leave the card without a pending handshake.
    card.select()?;
    Ok(OtaRequest {
        schema_version: OTA_SCHEMA_VERSION,
        card_id: hex::encode_upper(info.card_id),
        key_version: parsed.key_version,
        scp_i: parsed.i,
        sequence_counter: u32::from_be_bytes([0, counter[0], counter[1], counter[2]])
            .saturating_sub(1),
    })
}

fn card_id_bytes(hex_id: &str, what: &'static str) -> Result<[u8; 16], OtaError> {
    let bytes = hex::decode(hex_id).map_err(|reason| OtaError::Invalid {
        what,
        problem: OtaProblem::CardIdNotHex {
            card_id: hex_id.to_string(),
            reason,
        },
    })?;
    bytes.try_into().map_err(|_| OtaError::Invalid {
        what,
        problem: OtaProblem::CardIdLength {
            card_id: hex_id.to_string(),
        },
    })
}

/// Authority side: builds the script for the card of `request`, with the
/// authority's static keys for that card, at `level` (C-MAC + C-DECRYPTION
/// at least).
pub fn build_script(
    keys: &StaticKeys,
    request: &OtaRequest,
    level: SecurityLevel,
    operations: &[OtaOperation],
) -> Result<OtaScript, OtaError> {
    let invalid = |problem| OtaError::Invalid {
        what: "request",
        problem,
    };
    if request.schema_version != OTA_SCHEMA_VERSION {
        return Err(invalid(OtaProblem::SchemaVersion(request.schema_version)));
    }
    if !level.contains(SecurityLevel::C_MAC) || !level.contains(SecurityLevel::C_DECRYPTION) {
        return Err(invalid(OtaProblem::LevelLacksEncryption(level.bits())));
    }
    let card_id = card_id_bytes(&request.card_id, "request")?;
    let next = request.sequence_counter + 1;
    if next > MAX_SEQUENCE_COUNTER {
        return Err(invalid(OtaProblem::CounterExhausted));
    }
    let counter = [(next >> 16) as u8, (next >> 8) as u8, next as u8];
    let smode = SMode::from_i(request.scp_i);
    let mut host_challenge = vec![0u8; smode.size()];
    getrandom::getrandom(&mut host_challenge).map_err(OtaError::NoRandomness)?;
    let card_challenge = scp03::pseudo_random_card_challenge(keys, counter, &AID, smode);
    let mut kdd = [0u8; 10];
    kdd.copy_from_slice(&card_id[..10]);
    let scp = OtaError::Scp03;
    let expected = InitializeUpdateResponse::for_card(
        keys,
        &host_challenge,
        kdd,
        request.key_version,
        request.scp_i,
        &card_challenge,
        Some(counter),
    )
    .map_err(scp)?;
    let (mut channel, external_authenticate) =
        SecureChannel::host_authenticate(keys, &host_challenge, &expected, level).map_err(scp)?;
    let iu = scp03::initialize_update(request.key_version, &host_challenge).map_err(scp)?;
    let encode = |c: &Command| -> Result<String, OtaError> {
        c.to_bytes().map(hex::encode_upper).map_err(OtaError::Apdu)
    };
    let mut apdus = vec![encode(&iu)?, encode(&external_authenticate)?];
    let mut names = Vec::new();
    for op in operations {
        let requests: Vec<(String, Request)> = match op {
            OtaOperation::PutMo(tree, acl) => {
                tree.validate()
                    .map_err(|e| invalid(OtaProblem::MoTree(e)))?;
                tree.split()
                    .into_iter()
                    .map(|(uri, one)| {
                        (
                            format!("put mo:{uri}"),
                            Request::PutObject {
                                object: ObjectRef::Mo(uri),
                                value: ObjectValue::Mo(mo::card::record_for(&one)),
                                acl: acl.clone(),
                            },
                        )
                    })
                    .collect()
            }
            OtaOperation::DeleteMo(uri) => vec![(
                format!("delete mo:{uri}"),
                Request::DeleteObject {
                    object: ObjectRef::Mo(uri.clone()),
                },
            )],
            OtaOperation::PutPolicy(envelope) => vec![(
                "put policy".to_string(),
                Request::PutObject {
                    object: ObjectRef::Policy,
                    value: ObjectValue::Policy(envelope.clone()),
                    acl: None,
                },
            )],
        };
        for (name, req) in requests {
            let wrapped = channel.wrap_command(&req.to_command()).map_err(scp)?;
            apdus.push(encode(&wrapped)?);
            names.push(name);
        }
    }
    Ok(OtaScript {
        schema_version: OTA_SCHEMA_VERSION,
        card_id: request.card_id.to_ascii_uppercase(),
        key_version: request.key_version,
        sequence_counter: next,
        security_level: level.bits(),
        operations: names,
        apdus,
    })
}

/// What relaying a script did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtaOutcome {
    /// The card.
    pub card_id: String,
    /// APDUs sent.
    pub apdus: usize,
    /// The operations the card accepted.
    pub operations: Vec<String>,
}

/// Device side: relays `script` to the card. Checks that the card is the
/// script's (before sending anything), then sends each APDU and checks only
/// its status word (`9000`); stops at the first refusal.
pub fn apply_script<C: CardCommands + ?Sized>(
    card: &mut C,
    script: &OtaScript,
) -> Result<OtaOutcome, OtaError> {
    let info = card.select()?;
    let found = hex::encode_upper(info.card_id);
    if !found.eq_ignore_ascii_case(&script.card_id) {
        return Err(OtaError::OtherCard {
            expected: script.card_id.clone(),
            found,
        });
    }
    relay(card, script)
}

/// Relays the APDUs of a script without checking the card ID first (the card
/// is the judge); [`apply_script`] is what a device should call.
pub fn relay<C: CardCommands + ?Sized>(
    card: &mut C,
    script: &OtaScript,
) -> Result<OtaOutcome, OtaError> {
    if script.schema_version != OTA_SCHEMA_VERSION || script.apdus.len() < 2 {
        return Err(OtaError::Invalid {
            what: "script",
            problem: OtaProblem::ScriptShape,
        });
    }
    let commands = script
        .apdus
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let bytes = hex::decode(h).map_err(|reason| OtaError::Invalid {
                what: "script",
                problem: OtaProblem::ApduNotHex {
                    index: i + 1,
                    reason,
                },
            })?;
            Command::decode(&bytes).map_err(|source| OtaError::Invalid {
                what: "script",
                problem: OtaProblem::ApduMalformed {
                    index: i + 1,
                    source,
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut done = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let step = match i {
            0 => "INITIALIZE UPDATE".to_string(),
            1 => "EXTERNAL AUTHENTICATE".to_string(),
            n => script
                .operations
                .get(n - 2)
                .cloned()
                .unwrap_or_else(|| "wrapped command".into()),
        };
        let rsp: Response = card.transmit(cmd)?;
        if rsp.sw != 0x9000 {
            // End the session on the card (no pending handshake left behind).
            let _ = card.select();
            return Err(OtaError::Refused {
                index: i + 1,
                step,
                sw: rsp.sw,
            });
        }
        if i >= 2 {
            done.push(step);
        }
    }
    card.select()?;
    Ok(OtaOutcome {
        card_id: script.card_id.clone(),
        apdus: commands.len(),
        operations: done,
    })
}
/// Builds an OTA script ([`build_script`]) for the card of
/// `request` with `keys`: with master keys, the card's own keys are derived
/// from the request's card ID, so the script opens that card only.
pub fn build_ota_script(
    keys: &dyn CardAuthorityKeys,
    request: &OtaRequest,
    level: SecurityLevel,
    operations: &[OtaOperation],
) -> Result<OtaScript, OtaError> {
    let invalid = |problem| OtaError::Invalid {
        what: "request",
        problem,
    };
    let card_id = hex::decode(&request.card_id).map_err(|reason| {
        invalid(OtaProblem::CardIdNotHex {
            card_id: request.card_id.clone(),
            reason,
        })
    })?;
    let card_keys = keys.for_card(&card_id).map_err(|source| {
        invalid(OtaProblem::CardKeys {
            card_id: request.card_id.clone(),
            source,
        })
    })?;
    build_script(&card_keys.keys, request, level, operations)
}
