//! Many cards at once: the cards in every reader, and all-or-nothing rights
//! changes across them (the "gateway" use case: change the privilege ACL of a
//! group of devices only when the requesting server holds Replace on every
//! device's ACL, and otherwise report the devices that failed).
//!
//! [`acl_grant`] works in two phases:
//!
//! 1. **check**: on every card, open the requesting authority's SCP03 session,
//!    read the object's ACL and check that the authority holds Replace on it.
//!    If any card fails, no card is changed and the report lists the failed
//!    cards;
//! 2. **apply**: add the grant on every card. A card that fails now (e.g. lost
//!    from its reader) is reported, and every card already changed is put back
//!    to the ACL it had before. The card that failed is put back too when it
//!    answers again; when it does not, the host cannot know whether it holds
//!    the grant, and the outcome is [`GrantOutcome::Inconsistent`] with the
//!    card named in [`GrantReport::uncertain`] (its last known ACL, the ACL
//!    it may hold, and what to do).

#[cfg(test)]
#[cfg(feature = "sim")]
mod diversified_cards_tests;
pub mod diversify;
#[cfg(feature = "hsm")]
pub mod hsm;
#[cfg(feature = "records")]
pub mod records;
pub mod select;

use std::fmt;

use dmsc_card_model::commands::ObjectValue;
use dmsc_card_model::objects::{Acl, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::SecurityLevel;

use crate::error::HostError;
use crate::fleet::diversify::{open_card_authority, CardAuthorityKeys};
use crate::session::{CardCommands, Session};
use crate::transport::Transport;

/// One card of a fleet: the reader it sits in and a session to it.
pub struct FleetCard<T: Transport> {
    /// The reader's name (or the simulated card's file).
    pub reader: String,
    /// The session; [`FleetCard::card_id`] is known after the first SELECT.
    pub session: Session<T>,
}

impl<T: Transport> FleetCard<T> {
    /// A card in `reader`.
    pub fn new(reader: impl Into<String>, session: Session<T>) -> Self {
        FleetCard {
            reader: reader.into(),
            session,
        }
    }

    /// The card ID in hex, once the card has been selected.
    pub fn card_id(&self) -> Option<String> {
        self.session
            .select_info()
            .map(|i| hex::encode_upper(i.card_id))
    }

    /// What the card reports at SELECT.
    pub fn status(&mut self) -> Result<CardStatus, HostError> {
        let info = self.session.select()?;
        Ok(CardStatus {
            reader: self.reader.clone(),
            card_id: hex::encode_upper(info.card_id),
            generation: info.generation,
        })
    }
}

/// A card as `fleet list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardStatus {
    /// The reader.
    pub reader: String,
    /// The card ID (hex).
    pub card_id: String,
    /// The generation counter.
    pub generation: u64,
}

/// The phase a card failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading and checking the ACL; nothing was changed anywhere.
    Check,
    /// Writing the new ACL.
    Apply,
    /// Putting a changed card back to its previous ACL.
    Rollback,
}

impl Phase {
    /// `check`, `apply` or `rollback`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Apply => "apply",
            Phase::Rollback => "rollback",
        }
    }
}

/// A card that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCard {
    /// The reader.
    pub reader: String,
    /// The card ID, when the card answered SELECT.
    pub card_id: Option<String>,
    /// When it failed.
    pub phase: Phase,
    /// Why.
    pub reason: CardFailure,
}

/// Why a card of a fleet-wide grant failed ([`FailedCard::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardFailure {
    /// The card failed or refused a command (or its keys could not be derived).
    #[error("{0}")]
    Card(#[source] HostError),
    /// The key set given opened a session, but it is another authority's.
    #[error(
        "the keys given are those of {holder} (key version 0x{key_version:02X}), not {requested}"
    )]
    WrongAuthority {
        /// The authority the card names for that key version.
        holder: String,
        /// The key version of the session.
        key_version: u8,
        /// The requesting authority.
        requested: String,
    },
    /// The requesting authority does not hold Replace on the object's ACL.
    #[error(
        "{authority} does not hold Replace on {object} (ACL {})",
        acl_text(acl)
    )]
    NoReplace {
        /// The requesting authority.
        authority: String,
        /// The object.
        object: ObjectRef,
        /// The object's ACL on the card.
        acl: Acl,
    },
    /// The card that failed during the apply does not answer for the
    /// rollback: whether it holds the grant is unknown.
    #[error("unreachable after the failure; whether its ACL holds the grant is unknown: {0}")]
    Unreachable(#[source] HostError),
}

/// An ACL as failure reasons show it (`empty` for the empty ACL).
fn acl_text(acl: &Acl) -> String {
    if *acl == Acl::empty() {
        "empty".to_string()
    } else {
        acl.to_string()
    }
}

impl fmt::Display for FailedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) {}: {}",
            self.card_id.as_deref().unwrap_or("card ID unknown"),
            self.reader,
            self.phase.name(),
            self.reason
        )
    }
}

/// The outcome of a fleet-wide grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Every card now grants the right.
    Applied,
    /// The check failed on some card: no card was changed.
    Refused,
    /// A card failed during the apply; the cards already changed were put back.
    RolledBack,
    /// A card failed during the apply and some card could not be put back, or
    /// is unreachable so that its ACL is unknown ([`GrantReport::uncertain`]).
    Inconsistent,
}

impl GrantOutcome {
    /// `applied`, `refused`, `rolled-back` or `inconsistent`.
    pub fn name(self) -> &'static str {
        match self {
            GrantOutcome::Applied => "applied",
            GrantOutcome::Refused => "refused",
            GrantOutcome::RolledBack => "rolled-back",
            GrantOutcome::Inconsistent => "inconsistent",
        }
    }
}

/// One card's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardResult {
    /// The reader.
    pub reader: String,
    /// The card ID.
    pub card_id: Option<String>,
    /// The ACL before.
    pub before: Option<Acl>,
    /// The ACL the card holds at the end, as far as the host knows.
    pub after: Option<Acl>,
}

/// What [`acl_grant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantReport {
    /// The overall outcome.
    pub outcome: GrantOutcome,
    /// Every card, in order.
    pub cards: Vec<CardResult>,
    /// The cards that failed (empty when applied).
    pub failed: Vec<FailedCard>,
    /// Cards changed and then put back to their previous ACL.
    pub rolled_back: Vec<String>,
    /// Cards whose ACL the host does not know at the end (only with
    /// [`GrantOutcome::Inconsistent`]).
    pub uncertain: Vec<UncertainCard>,
}

/// A card whose ACL is unknown after a failed rollback: it holds either its
/// last known ACL or the other one (the card lost during the apply: before /
/// with the grant; a changed card whose rollback failed: with the grant /
/// before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncertainCard {
    /// The reader.
    pub reader: String,
    /// The card ID, when the card answered SELECT.
    pub card_id: Option<String>,
    /// The last ACL read from the card (before the grant).
    pub last_known: Acl,
    /// The other ACL it may hold (the write that did not answer reached it).
    pub maybe: Acl,
    /// The ACL to set it to, like the other cards (its ACL before the grant).
    pub restore_to: Acl,
}

impl UncertainCard {
    /// What to do about it.
    pub fn advice(&self) -> String {
        format!(
            "put the card back in its reader, read its ACL (dmsc acl get) and, if it \
             is not {}, set it back (dmsc acl set … '{}')",
            self.restore_to, self.restore_to
        )
    }
}

impl fmt::Display for UncertainCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): ACL unknown, last known {}, possibly {}; {}",
            self.card_id.as_deref().unwrap_or("card ID unknown"),
            self.reader,
            self.last_known,
            self.maybe,
            self.advice()
        )
    }
}

/// A grant to make on every card.
pub struct GrantRequest<'a> {
    /// The object whose ACL changes.
    pub object: ObjectRef,
    /// The right granted.
    pub right: Right,
    /// To whom.
    pub to: Principal,
    /// The requesting authority's name (it must hold Replace on every card's ACL).
    pub as_authority: &'a str,
    /// Its SCP03 key set, the same on every card or diversified per card.
    pub keys: &'a dyn CardAuthorityKeys,
    /// The security level of its sessions.
    pub level: SecurityLevel,
}

/// Progress of a fleet operation, for a display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A card passed (or failed) a phase.
    Card {
        /// The phase.
        phase: Phase,
        /// The card's reader.
        reader: &'a str,
        /// Whether it succeeded.
        ok: bool,
    },
}

/// Opens the authority session and checks that `req.as_authority` holds
/// Replace on the object's ACL; returns the ACL.
fn check_card<T: Transport>(
    card: &mut FleetCard<T>,
    req: &GrantRequest<'_>,
) -> Result<Acl, CardFailure> {
    let channel =
        open_card_authority(&mut card.session, req.keys, req.level).map_err(CardFailure::Card)?;
    // When the key set is readable, make sure the keys are the named authority's.
    if let Ok(data) = card
        .session
        .read_object(&ObjectRef::Authority(channel.key_version))
    {
        if let ObjectValue::Authority(info) = data.value {
            if info.name != req.as_authority {
                return Err(CardFailure::WrongAuthority {
                    holder: info.name,
                    key_version: channel.key_version,
                    requested: req.as_authority.to_string(),
                });
            }
        }
    }
    let acl = card
        .session
        .read_object(&req.object)
        .map_err(CardFailure::Card)?
        .acl;
    let caller = [
        Principal::Anyone,
        Principal::Authority(req.as_authority.to_string()),
    ];
    if !acl.allows(&caller, Right::Replace) {
        return Err(CardFailure::NoReplace {
            authority: req.as_authority.to_string(),
            object: req.object.clone(),
            acl,
        });
    }
    Ok(acl)
}

/// Writes `acl` on a card, reopening the authority session if needed.
fn write_acl<T: Transport>(
    card: &mut FleetCard<T>,
    req: &GrantRequest<'_>,
    acl: &Acl,
) -> Result<(), HostError> {
    if !card.session.is_secured() {
        open_card_authority(&mut card.session, req.keys, req.level)?;
    }
    card.session.set_acl(&req.object, acl)
}

/// Grants `req.right` on `req.object` to `req.to` on every card, or on none.
/// See the module documentation for the two phases.
pub fn acl_grant<T: Transport>(
    cards: &mut [FleetCard<T>],
    req: &GrantRequest<'_>,
    mut progress: impl FnMut(Progress<'_>),
) -> GrantReport {
    let mut results: Vec<CardResult> = Vec::with_capacity(cards.len());
    let mut failed = Vec::new();
    let mut before = Vec::with_capacity(cards.len());
    for card in cards.iter_mut() {
        let checked = check_card(card, req);
        progress(Progress::Card {
            phase: Phase::Check,
            reader: &card.reader,
            ok: checked.is_ok(),
        });
        match checked {
            Ok(acl) => before.push(Some(acl)),
            Err(reason) => {
                failed.push(FailedCard {
                    reader: card.reader.clone(),
                    card_id: card.card_id(),
                    phase: Phase::Check,
                    reason,
                });
                before.push(None);
            }
        }
        results.push(CardResult {
            reader: card.reader.clone(),
            card_id: card.card_id(),
            before: before.last().cloned().flatten(),
            after: before.last().cloned().flatten(),
        });
    }
    if !failed.is_empty() {
        return GrantReport {
            outcome: GrantOutcome::Refused,
            cards: results,
            failed,
            rolled_back: Vec::new(),
            uncertain: Vec::new(),
        };
    }

    // Apply.
    let mut changed: Vec<usize> = Vec::new();
    let mut broken: Option<usize> = None;
    for (i, card) in cards.iter_mut().enumerate() {
        let Some(old) = before[i].clone() else {
            continue;
        };
        let mut new = old.clone();
        new.grant(req.right, req.to.clone());
        if new == old {
            progress(Progress::Card {
                phase: Phase::Apply,
                reader: &card.reader,
                ok: true,
            });
            continue;
        }
        let written = write_acl(card, req, &new);
        progress(Progress::Card {
            phase: Phase::Apply,
            reader: &card.reader,
            ok: written.is_ok(),
        });
        match written {
            Ok(()) => {
                results[i].after = Some(new);
                changed.push(i);
            }
            Err(e) => {
                failed.push(FailedCard {
                    reader: card.reader.clone(),
                    card_id: card.card_id(),
                    phase: Phase::Apply,
                    reason: CardFailure::Card(e),
                });
                // The card may or may not have committed the change.
                results[i].after = None;
                broken = Some(i);
                break;
            }
        }
    }
    let Some(broken) = broken else {
        return GrantReport {
            outcome: GrantOutcome::Applied,
            cards: results,
            failed,
            rolled_back: Vec::new(),
            uncertain: Vec::new(),
        };
    };

    // Roll back: the card that failed (if it is reachable again) and every card changed.
    let mut rolled_back = Vec::new();
    let mut uncertain = Vec::new();
    let mut consistent = true;
    for i in changed.into_iter().chain(std::iter::once(broken)) {
        let card = &mut cards[i];
        let Some(old) = before[i].clone() else {
            continue;
        };
        let was_broken = i == broken;
        let restored = (|| {
            if was_broken {
                // A fresh session: the old one died with the failure.
                card.session.clear_secure_messaging();
                open_card_authority(&mut card.session, req.keys, req.level)?;
                if card.session.read_object(&req.object)?.acl == old {
                    return Ok(false);
                }
            }
            write_acl(card, req, &old).map(|()| true)
        })();
        progress(Progress::Card {
            phase: Phase::Rollback,
            reader: &card.reader,
            ok: restored.is_ok(),
        });
        match restored {
            Ok(wrote) => {
                results[i].after = Some(old);
                if wrote {
                    rolled_back.push(card.card_id().unwrap_or_else(|| card.reader.clone()));
                }
            }
            Err(e) => {
                // Either way the host does not know what the card holds.
                consistent = false;
                let mut granted = old.clone();
                granted.grant(req.right, req.to.clone());
                let (last_known, maybe) = if was_broken {
                    (old.clone(), granted)
                } else {
                    (granted, old.clone())
                };
                uncertain.push(UncertainCard {
                    reader: card.reader.clone(),
                    card_id: card.card_id(),
                    last_known,
                    maybe,
                    restore_to: old.clone(),
                });
                failed.push(FailedCard {
                    reader: card.reader.clone(),
                    card_id: card.card_id(),
                    phase: Phase::Rollback,
                    reason: if was_broken {
                        CardFailure::Unreachable(e)
                    } else {
                        CardFailure::Card(e)
                    },
                });
            }
        }
    }
    GrantReport {
        outcome: if consistent {
            GrantOutcome::RolledBack
        } else {
            GrantOutcome::Inconsistent
        },
        cards: results,
        failed,
        rolled_back,
        uncertain,
    }
}

/// One object a provisioning profile writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileObject {
    /// The object.
    pub object: ObjectRef,
    /// Its value.
    pub value: ObjectValue,
    /// Its ACL (the card's default for the kind when absent).
    pub acl: Option<Acl>,
}

/// What `fleet provision` writes on every card.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The objects, written in order.
    pub objects: Vec<ProfileObject>,
    /// The failure limit to set, if any.
    pub failure_limit: Option<u8>,
}

/// Why a provisioning profile (`DIR/profile.json`, docs/fleet.md) was not
/// accepted. Every message names the file and the entry.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `profile.json` is not valid (JSON syntax, a missing or unknown field).
    #[error("{file}: {source} (the format: docs/fleet.md, \"Provisioning profile\")")]
    Json {
        /// The file.
        file: String,
        /// The JSON error (line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A value is not acceptable.
    #[error("{at}: {detail} (the format: docs/fleet.md, \"Provisioning profile\")")]
    Invalid {
        /// The file and the entry.
        at: String,
        /// What is wrong.
        #[source]
        detail: ProfileProblem,
    },
}

/// What is wrong with a value of a provisioning profile
/// ([`ProfileError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileProblem {
    /// `failure_limit` is below the card model's minimum.
    #[error("must be at least {min}")]
    FailureLimitTooLow {
        /// The minimum ([`dmsc_card_model::commands::MIN_FAILURE_LIMIT`]).
        min: u8,
        /// The limit the profile asks for.
        found: u8,
    },
    /// `ref` is not an object reference of the card model.
    #[error("invalid object reference: {source}")]
    ObjectRef {
        /// The card model's reason.
        #[source]
        source: dmsc_card_model::objects::ModelError,
    },
    /// An MO without `mo_type`.
    #[error("an MO needs \"mo_type\"")]
    MoTypeMissing,
    /// An object that is neither an MO nor the policy (or the policy with an
    /// `mo_type`).
    #[error("profiles hold MOs (with mo_type) and the policy")]
    NotMoOrPolicy {
        /// The object named.
        object: ObjectRef,
    },
    /// `acl` is not an ACL of the card model.
    #[error("invalid ACL: {source}")]
    Acl {
        /// The card model's reason.
        #[source]
        source: dmsc_card_model::objects::ModelError,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileJson {
    objects: Vec<ProfileObjectJson>,
    failure_limit: Option<u8>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileObjectJson {
    #[serde(rename = "ref")]
    object: String,
    mo_type: Option<String>,
    file: String,
    acl: Option<String>,
}

/// The name of the profile file in a profile directory.
pub const PROFILE_FILE: &str = "profile.json";

impl Profile {
    /// Reads `dir/profile.json` and the files it names (relative to `dir`).
    /// Object references are the card model's (`mo:./URI` or `./URI`,
    /// `policy`); a failure limit below [`MIN_FAILURE_LIMIT`] is refused.
    ///
    /// [`MIN_FAILURE_LIMIT`]: dmsc_card_model::commands::MIN_FAILURE_LIMIT
    pub fn load(dir: &std::path::Path) -> Result<Profile, ProfileError> {
        use dmsc_card_model::commands::{MoRecord, MIN_FAILURE_LIMIT};
        let path = dir.join(PROFILE_FILE);
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
            file: file.clone(),
            source,
        })?;
        let json: ProfileJson =
            serde_json::from_str(&text).map_err(|source| ProfileError::Json {
                file: file.clone(),
                source,
            })?;
        if let Some(found) = json.failure_limit.filter(|l| *l < MIN_FAILURE_LIMIT) {
            return Err(ProfileError::Invalid {
                at: format!("{file} failure_limit"),
                detail: ProfileProblem::FailureLimitTooLow {
                    min: MIN_FAILURE_LIMIT,
                    found,
                },
            });
        }
        let mut objects = Vec::new();
        for (i, o) in json.objects.iter().enumerate() {
            let at = format!("{file} objects[{i}] ({})", o.object);
            let invalid = |detail: ProfileProblem| ProfileError::Invalid {
                at: at.clone(),
                detail,
            };
            let text_ref = if o.object.starts_with("./") {
                format!("mo:{}", o.object)
            } else {
                o.object.clone()
            };
            let object: ObjectRef = text_ref
                .parse()
                .map_err(|source| invalid(ProfileProblem::ObjectRef { source }))?;
            let content_path = dir.join(&o.file);
            let content = std::fs::read(&content_path).map_err(|source| ProfileError::Read {
                file: format!("{} (named by {at})", content_path.display()),
                source,
            })?;
            let value = match (&object, &o.mo_type) {
                (ObjectRef::Mo(_), Some(t)) => ObjectValue::Mo(MoRecord {
                    mo_type: t.clone(),
                    version: 0,
                    content,
                }),
                (ObjectRef::Mo(_), None) => return Err(invalid(ProfileProblem::MoTypeMissing)),
                (ObjectRef::Policy, None) => ObjectValue::Policy(content),
                _ => {
                    return Err(invalid(ProfileProblem::NotMoOrPolicy {
                        object: object.clone(),
                    }))
                }
            };
            let acl = o
                .acl
                .as_deref()
                .map(Acl::parse)
                .transpose()
                .map_err(|source| invalid(ProfileProblem::Acl { source }))?;
            objects.push(ProfileObject { object, value, acl });
        }
        Ok(Profile {
            objects,
            failure_limit: json.failure_limit,
        })
    }
}

/// One card's provisioning result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionResult {
    /// The reader.
    pub reader: String,
    /// The card ID, when the card answered SELECT.
    pub card_id: Option<String>,
    /// The generation after provisioning.
    pub generation: Option<u64>,
    /// `Ok(objects written)` or why the card failed.
    pub result: Result<usize, ProvisionError>,
}

/// Why provisioning one card failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// The card failed or refused.
    #[error("{0}")]
    Card(#[from] HostError),
    /// The card's worker thread stopped before reporting.
    #[error("the worker stopped unexpectedly")]
    WorkerStopped,
}

pub(crate) fn provision_one<T: Transport>(
    card: &mut FleetCard<T>,
    profile: &Profile,
    keys: &dyn CardAuthorityKeys,
    level: SecurityLevel,
) -> Result<(usize, u8), HostError> {
    let channel = open_card_authority(&mut card.session, keys, level)?;
    for o in &profile.objects {
        card.session
            .put_object(&o.object, &o.value, o.acl.as_ref())?;
    }
    if let Some(limit) = profile.failure_limit {
        let value = ObjectValue::Card(dmsc_card_model::commands::CardConfig {
            failure_limit: limit,
            used_memory: 0,
            total_memory: 0,
        });
        card.session.put_object(&ObjectRef::Card, &value, None)?;
    }
    Ok((
        profile.objects.len() + usize::from(profile.failure_limit.is_some()),
        channel.key_version,
    ))
}

/// Provisions every card in parallel, one worker per reader; `progress` is
/// called (from the workers) as each card finishes, with its result.
pub fn provision<T: Transport>(
    cards: &mut [FleetCard<T>],
    profile: &Profile,
    keys: &dyn CardAuthorityKeys,
    level: SecurityLevel,
    progress: &(dyn Fn(&ProvisionResult) + Sync),
) -> Vec<ProvisionResult> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = cards
            .iter_mut()
            .map(|card| {
                scope.spawn(move || {
                    let result = provision_one(card, profile, keys, level)
                        .map(|(written, _)| written)
                        .map_err(ProvisionError::from);
                    let generation = card.session.select().ok().map(|i| i.generation);
                    let r = ProvisionResult {
                        reader: card.reader.clone(),
                        card_id: card.card_id(),
                        generation,
                        result,
                    };
                    progress(&r);
                    r
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| ProvisionResult {
                    reader: String::new(),
                    card_id: None,
                    generation: None,
                    result: Err(ProvisionError::WorkerStopped),
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod profile_tests {
    use super::*;

    fn dir_with(profile: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("temporary directory");
        std::fs::write(d.path().join(PROFILE_FILE), profile).expect("write");
        std::fs::write(d.path().join("dmacc.xml"), "<MgmtTree/>").expect("write");
        d
    }

    #[test]
    fn a_profile_loads_and_its_errors_point_to_the_format() {
        let d = dir_with(
            r#"{"objects": [{"ref": "./DMAcc/Gw", "mo_type": "urn:x", "file": "dmacc.xml",
                "acl": "Get=*&Replace=admin"}], "failure_limit": 6}"#,
        );
        let p = Profile::load(d.path()).expect("loads");
        assert_eq!(p.objects.len(), 1);
        assert_eq!(p.objects[0].object, ObjectRef::Mo("./DMAcc/Gw".into()));
        assert_eq!(p.failure_limit, Some(6));

        let e = Profile::load(dir_with(r#"{"failure_limit": 6}"#).path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing field `objects`") && e.contains("docs/fleet.md"),
            "{e}"
        );
        // The card model's minimum, not a number of its own.
        let e = Profile::load(dir_with(r#"{"objects": [], "failure_limit": 3}"#).path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "at least {}",
                dmsc_card_model::commands::MIN_FAILURE_LIMIT
            )),
            "{e}"
        );
        let e =
            Profile::load(dir_with(r#"{"objects": [{"ref": "./A", "file": "dmacc.xml"}]}"#).path())
                .unwrap_err()
                .to_string();
        assert!(e.contains("objects[0]") && e.contains("mo_type"), "{e}");
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic)]
mod error_tests {
    use super::*;
    use crate::error::ProtocolFault;

    const FORMAT: &str = "(the format: docs/fleet.md, \"Provisioning profile\")";

    fn load(profile: &str) -> (String, ProfileError) {
        let d = tempfile::tempdir().expect("temporary directory");
        std::fs::write(d.path().join(PROFILE_FILE), profile).expect("write");
        std::fs::write(d.path().join("dmacc.xml"), "<MgmtTree/>").expect("write");
        let file = d.path().join(PROFILE_FILE).display().to_string();
        (file, Profile::load(d.path()).expect_err("refused"))
    }

    #[test]
    fn each_profile_problem_is_typed_and_reads_as_before() {
        let (file, e) = load(r#"{"objects": [], "failure_limit": 3}"#);
        assert!(
            matches!(
                &e,
                ProfileError::Invalid {
                    detail: ProfileProblem::FailureLimitTooLow { min: 4, found: 3 },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("{file} failure_limit: must be at least 4 {FORMAT}")
        );

        let (file, e) = load(r#"{"objects": [{"ref": "nothing:x", "file": "dmacc.xml"}]}"#);
        let ProfileError::Invalid {
            detail: ProfileProblem::ObjectRef { source },
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            e.to_string(),
            format!("{file} objects[0] (nothing:x): invalid object reference: {source} {FORMAT}")
        );
        assert!(!source.to_string().is_empty());

        let (file, e) = load(r#"{"objects": [{"ref": "./A", "file": "dmacc.xml"}]}"#);
        assert!(
            matches!(
                &e,
                ProfileError::Invalid {
                    detail: ProfileProblem::MoTypeMissing,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("{file} objects[0] (./A): an MO needs \"mo_type\" {FORMAT}")
        );

        let (file, e) =
            load(r#"{"objects": [{"ref": "policy", "mo_type": "urn:x", "file": "dmacc.xml"}]}"#);
        assert!(
            matches!(
                &e,
                ProfileError::Invalid {
                    detail: ProfileProblem::NotMoOrPolicy {
                        object: ObjectRef::Policy
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{file} objects[0] (policy): profiles hold MOs (with mo_type) and the policy \
                 {FORMAT}"
            )
        );

        let (file, e) =
            load(r#"{"objects": [{"ref": "policy", "file": "dmacc.xml", "acl": "Nope"}]}"#);
        let ProfileError::Invalid {
            detail: ProfileProblem::Acl { source },
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            e.to_string(),
            format!("{file} objects[0] (policy): invalid ACL: {source} {FORMAT}")
        );
        assert!(!source.to_string().is_empty());
    }

    fn no_card_id() -> HostError {
        HostError::Protocol {
            command: "SELECT",
            fault: ProtocolFault::NoCardId,
        }
    }

    #[test]
    fn each_card_failure_reads_as_before() {
        let host = no_card_id();
        let text = host.to_string();
        let failed = |reason: CardFailure| FailedCard {
            reader: "reader 0".into(),
            card_id: Some("00AA".into()),
            phase: Phase::Rollback,
            reason,
        };
        assert_eq!(CardFailure::Card(host.clone()).to_string(), text);
        assert_eq!(
            CardFailure::WrongAuthority {
                holder: "Transport".into(),
                key_version: 0x01,
                requested: "Line".into(),
            }
            .to_string(),
            "the keys given are those of Transport (key version 0x01), not Line"
        );
        let no_replace = |acl: &str| CardFailure::NoReplace {
            authority: "Line".into(),
            object: ObjectRef::Policy,
            acl: Acl::parse(acl).expect("acl"),
        };
        assert_eq!(
            no_replace("Get=*&Replace=admin").to_string(),
            "Line does not hold Replace on policy (ACL Get=*&Replace=admin)"
        );
        assert_eq!(
            no_replace("").to_string(),
            "Line does not hold Replace on policy (ACL empty)"
        );
        assert_eq!(
            failed(CardFailure::Unreachable(host)).to_string(),
            format!(
                "00AA (reader 0) rollback: unreachable after the failure; whether its ACL \
                 holds the grant is unknown: {text}"
            )
        );
    }
}

#[cfg(all(test, feature = "sim"))]
#[allow(clippy::expect_used, clippy::panic)]
mod grant_failure_tests {
    use super::*;
    use crate::session::scp::{open_secure_channel, AuthorityKeySet};
    use crate::transport::sim::SimTransport;
    use dmsc_card_model::scp03::StaticKeys;
    use dmsc_sim_card::{AuthorityKeys, InitParams, MemoryStore};
    use zeroize::Zeroizing;

    const KEY: [u8; 16] = [0x4B; 16];

    fn keys(byte: u8) -> AuthorityKeySet {
        AuthorityKeySet {
            key_version: 0x01,
            keys: StaticKeys::new(&[byte; 16], &[byte; 16], &[byte; 16]).expect("keys"),
        }
    }

    fn level() -> SecurityLevel {
        SecurityLevel::new(0x33).expect("level")
    }

    /// A card whose administrator `Transport` (key set 01) holds the policy
    /// with the ACL `Get=*&Replace=Line`.
    fn card() -> FleetCard<SimTransport<MemoryStore>> {
        let params = InitParams::with_authorities(vec![AuthorityKeys {
            key_version: 0x01,
            name: "Transport".into(),
            enc: Zeroizing::new(KEY.to_vec()),
            mac: Zeroizing::new(KEY.to_vec()),
            dek: Zeroizing::new(KEY.to_vec()),
        }]);
        let mut s = Session::new(SimTransport::in_memory(params).expect("card"));
        open_secure_channel(&mut s, &keys(0x4B), level()).expect("session");
        s.put_object(
            &ObjectRef::Policy,
            &ObjectValue::Policy(b"p".to_vec()),
            Some(&Acl::parse("Get=*&Replace=Line").expect("acl")),
        )
        .expect("policy");
        s.clear_secure_messaging();
        FleetCard::new("reader 0", s)
    }

    fn grant(as_authority: &str, keys: &AuthorityKeySet) -> GrantReport {
        acl_grant(
            &mut [card()],
            &GrantRequest {
                object: ObjectRef::Policy,
                right: Right::Get,
                to: Principal::Authority("Audit".into()),
                as_authority,
                keys,
                level: level(),
            },
            |_| {},
        )
    }

    #[test]
    fn a_refused_check_names_its_typed_cause() {
        let r = grant("Transport", &keys(0x4B));
        assert_eq!(r.outcome, GrantOutcome::Refused);
        let f = &r.failed[0];
        assert!(
            matches!(
                &f.reason,
                CardFailure::NoReplace { authority, object: ObjectRef::Policy, .. }
                    if authority == "Transport"
            ),
            "{f:?}"
        );
        let id = f.card_id.clone().expect("card ID");
        assert_eq!(
            f.to_string(),
            format!(
                "{id} (reader 0) check: Transport does not hold Replace on policy \
                 (ACL Get=*&Replace=Line)"
            )
        );

        let r = grant("Line", &keys(0x4B));
        assert_eq!(
            r.failed[0].reason,
            CardFailure::WrongAuthority {
                holder: "Transport".into(),
                key_version: 0x01,
                requested: "Line".into(),
            }
        );
        assert_eq!(
            r.failed[0].reason.to_string(),
            "the keys given are those of Transport (key version 0x01), not Line"
        );

        let r = grant("Transport", &keys(0x10));
        let CardFailure::Card(e) = &r.failed[0].reason else {
            panic!("{:?}", r.failed)
        };
        assert_eq!(r.failed[0].reason.to_string(), e.to_string());
    }
}
