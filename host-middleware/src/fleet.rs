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

use std::fmt;

use dmsc_card_model::commands::ObjectValue;
use dmsc_card_model::objects::{Acl, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::SecurityLevel;

use crate::error::HostError;
use crate::scp::{open_secure_channel, AuthorityKeySet};
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
    pub reason: String,
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
    /// Its SCP03 key set.
    pub keys: &'a AuthorityKeySet,
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

fn reason(e: &HostError) -> String {
    e.to_string()
}

/// Opens the authority session and checks that `req.as_authority` holds
/// Replace on the object's ACL; returns the ACL.
fn check_card<T: Transport>(
    card: &mut FleetCard<T>,
    req: &GrantRequest<'_>,
) -> Result<Acl, String> {
    let channel =
        open_secure_channel(&mut card.session, req.keys, req.level).map_err(|e| reason(&e))?;
    // When the key set is readable, make sure the keys are the named authority's.
    if let Ok(data) = card
        .session
        .read_object(&ObjectRef::Authority(channel.key_version))
    {
        if let ObjectValue::Authority(info) = data.value {
            if info.name != req.as_authority {
                return Err(format!(
                    "the keys given are those of {} (key version {:02X}), not {}",
                    info.name, channel.key_version, req.as_authority
                ));
            }
        }
    }
    let acl = card
        .session
        .read_object(&req.object)
        .map_err(|e| reason(&e))?
        .acl;
    let caller = [
        Principal::Anyone,
        Principal::Authority(req.as_authority.to_string()),
    ];
    if !acl.allows(&caller, Right::Replace) {
        return Err(format!(
            "{} does not hold Replace on {} (ACL {})",
            req.as_authority,
            req.object,
            if acl == Acl::empty() {
                "empty".to_string()
            } else {
                acl.to_string()
            }
        ));
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
        open_secure_channel(&mut card.session, req.keys, req.level)?;
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
                    reason: reason(&e),
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
                open_secure_channel(&mut card.session, req.keys, req.level)?;
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
                        format!(
                            "unreachable after the failure; whether its ACL holds the grant is \
                             unknown: {}",
                            reason(&e)
                        )
                    } else {
                        reason(&e)
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
    pub result: Result<usize, String>,
}

fn provision_one<T: Transport>(
    card: &mut FleetCard<T>,
    profile: &Profile,
    keys: &AuthorityKeySet,
    level: SecurityLevel,
) -> Result<usize, HostError> {
    open_secure_channel(&mut card.session, keys, level)?;
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
    Ok(profile.objects.len() + usize::from(profile.failure_limit.is_some()))
}

/// Provisions every card in parallel, one worker per reader; `progress` is
/// called (from the workers) as each card finishes, with its result.
pub fn provision<T: Transport>(
    cards: &mut [FleetCard<T>],
    profile: &Profile,
    keys: &AuthorityKeySet,
    level: SecurityLevel,
    progress: &(dyn Fn(&ProvisionResult) + Sync),
) -> Vec<ProvisionResult> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = cards
            .iter_mut()
            .map(|card| {
                scope.spawn(move || {
                    let result = provision_one(card, profile, keys, level).map_err(|e| reason(&e));
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
                    result: Err("the worker stopped unexpectedly".into()),
                })
            })
            .collect()
    })
}
