//! The device's decision on a package: the card's verdict, the MCUboot
//! image check and the consent policy give one [`Decision`]; the user's answer
//! (when asked) gives the [`Outcome`].
//!
//! Rules (docs/firmware-approval.md §3):
//! - approved by the card and the MCUboot check passes (or there is no
//!   MCUboot image): [`Decision::Approved`];
//! - an MCUboot image whose own checks fail is refused, whatever the policy;
//! - a version below the anti-rollback floor is refused, whatever the user
//!   says, unless the device policy explicitly allows it
//!   ([`ConsentPolicy::allow_below_floor`], dangerous);
//! - a refusal whose reasons the card did not disclose is treated like a
//!   floor refusal (it may be one);
//! - any other refusal is put to the user when the policy says
//!   [`OnUnapproved::Ask`], with the PIN first when the card's rule says so.

use std::fmt;

use dmsc_card_model::commands::{ApprovalVerdict, RefusalReason};

use crate::firmware::mcuboot::{Check, McubootReport};

/// What to do with a package the card does not approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnapproved {
    /// Refuse it.
    #[default]
    Reject,
    /// Ask the user (after the PIN, when the card's rule requires it).
    Ask,
}

/// The device's policy on refused packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsentPolicy {
    /// Refuse, or ask the user.
    pub on_unapproved: OnUnapproved,
    /// DANGEROUS: let the user accept a version below the anti-rollback floor
    /// (a downgrade, possibly to a version with known holes). Off by default;
    /// only an explicit device setting turns it on, and it still needs the
    /// user's consent with [`OnUnapproved::Ask`].
    pub allow_below_floor: bool,
}

/// Why a package is not approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The card's reason.
    Card(RefusalReason),
    /// The card refused without saying why.
    Undisclosed,
    /// The MCUboot image's own checks failed.
    Mcuboot {
        /// The image hash check.
        sha256: Check,
        /// The signature check.
        signature: Check,
        /// A structural problem, if any.
        error: Option<super::mcuboot::ImageProblem>,
    },
}

impl Reason {
    /// Whether the user may accept a package refused for this reason under
    /// `policy` (with [`OnUnapproved::Ask`]).
    pub fn consentable(&self, policy: &ConsentPolicy) -> bool {
        match self {
            Reason::Card(RefusalReason::BelowFloor(_)) | Reason::Undisclosed => {
                policy.allow_below_floor
            }
            Reason::Card(
                RefusalReason::MissingApprover(_)
                | RefusalReason::BadSignature(_)
                | RefusalReason::UnknownApprover(_)
                | RefusalReason::NoRule,
            ) => true,
            // A reason this version does not know: no consent.
            #[allow(unreachable_patterns)]
            Reason::Card(_) => false,
            Reason::Mcuboot { .. } => false,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Card(r) => r.fmt(f),
            Reason::Undisclosed => f.write_str("refused by the card (no reason given)"),
            Reason::Mcuboot {
                sha256,
                signature,
                error,
            } => {
                write!(
                    f,
                    "MCUboot image check failed: hash {sha256:?}, signature {signature:?}"
                )?;
                if let Some(e) = error {
                    write!(f, ", {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why a refusal cannot be put to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// The policy is [`OnUnapproved::Reject`].
    PolicyRejects,
    /// The MCUboot image's own checks failed.
    McubootFailed,
    /// The version is below the anti-rollback floor (or the card did not say
    /// why it refused), and the device policy does not allow that.
    BelowFloor,
}

impl fmt::Display for Final {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Final::PolicyRejects => "the device policy rejects unapproved packages",
            Final::McubootFailed => "an MCUboot image that fails its own checks is never installed",
            Final::BelowFloor => {
                "a package below the anti-rollback floor is never installed by consent; \
                 only the dangerous device setting allow-below-floor relaxes this"
            }
        })
    }
}

/// The decision before the user is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved: install.
    Approved,
    /// Refused; nobody can accept it.
    Refused {
        /// Why.
        reasons: Vec<Reason>,
        /// Why it is final.
        cause: Final,
    },
    /// Refused by the card, but the user may accept it.
    AskUser {
        /// Why.
        reasons: Vec<Reason>,
        /// The user must verify the PIN before accepting.
        needs_pin: bool,
    },
}

impl Decision {
    /// The reasons (empty when approved).
    pub fn reasons(&self) -> &[Reason] {
        match self {
            Decision::Approved => &[],
            Decision::Refused { reasons, .. } | Decision::AskUser { reasons, .. } => reasons,
        }
    }

    /// The outcome once the user answered (`accepted`); for a decision that
    /// asks nobody, the answer is ignored.
    pub fn answered(&self, accepted: bool) -> Outcome {
        match self {
            Decision::Approved => Outcome::Approved,
            Decision::Refused { .. } => Outcome::Refused,
            Decision::AskUser { .. } if accepted => Outcome::AcceptedByUser,
            Decision::AskUser { .. } => Outcome::DeclinedByUser,
        }
    }
}

/// The final outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Approved by the card (and MCUboot).
    Approved,
    /// Refused.
    Refused,
    /// Refused by the card, accepted by the user.
    AcceptedByUser,
    /// Refused by the card, and the user declined too.
    DeclinedByUser,
}

impl Outcome {
    /// The word used in JSON (`decision`).
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Refused => "refused",
            Outcome::AcceptedByUser => "accepted-by-user",
            Outcome::DeclinedByUser => "declined-by-user",
        }
    }

    /// Whether the package may be installed.
    pub fn install(self) -> bool {
        matches!(self, Outcome::Approved | Outcome::AcceptedByUser)
    }
}

/// Decides on a package from the card's verdict, the MCUboot report (`None`:
/// not an MCUboot image) and the device's consent policy.
pub fn decide(
    verdict: &ApprovalVerdict,
    mcuboot: Option<&McubootReport>,
    policy: &ConsentPolicy,
) -> Decision {
    let mut reasons: Vec<Reason> = verdict.reasons.iter().cloned().map(Reason::Card).collect();
    if !verdict.approved && reasons.is_empty() {
        reasons.push(Reason::Undisclosed);
    }
    let mcuboot_failed = match mcuboot {
        Some(r) if !r.ok() => {
            reasons.push(Reason::Mcuboot {
                sha256: r.sha256,
                signature: r.signature,
                error: r.error.clone(),
            });
            true
        }
        _ => false,
    };
    if verdict.approved && !mcuboot_failed {
        return Decision::Approved;
    }
    let cause = if mcuboot_failed {
        Some(Final::McubootFailed)
    } else if reasons.iter().any(|r| !r.consentable(policy)) {
        Some(Final::BelowFloor)
    } else if policy.on_unapproved == OnUnapproved::Reject {
        Some(Final::PolicyRejects)
    } else {
        None
    };
    match cause {
        Some(cause) => Decision::Refused { reasons, cause },
        None => Decision::AskUser {
            reasons,
            needs_pin: verdict.user_consent_needs_pin,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmsc_card_model::objects::Version;

    fn verdict(reasons: Vec<RefusalReason>, pin: bool) -> ApprovalVerdict {
        ApprovalVerdict {
            approved: reasons.is_empty(),
            reasons,
            user_consent_needs_pin: pin,
        }
    }

    fn report(ok: bool) -> McubootReport {
        McubootReport {
            version: "1.2.3+0".into(),
            sha256: if ok { Check::Valid } else { Check::Invalid },
            signature: Check::NotChecked,
            error: None,
        }
    }

    fn floor() -> RefusalReason {
        RefusalReason::BelowFloor(Version::parse("2.1.0").expect("version"))
    }

    fn missing() -> RefusalReason {
        RefusalReason::MissingApprover("owner".into())
    }

    fn policies() -> Vec<ConsentPolicy> {
        let mut v = Vec::new();
        for on_unapproved in [OnUnapproved::Reject, OnUnapproved::Ask] {
            for allow_below_floor in [false, true] {
                v.push(ConsentPolicy {
                    on_unapproved,
                    allow_below_floor,
                });
            }
        }
        v
    }

    type DecideFn = fn(&ApprovalVerdict, Option<&McubootReport>, &ConsentPolicy) -> Decision;

    /// Checks `decide` on every verdict × MCUboot report × policy against the
    /// rules written out; the first violation, if any.
    fn check_rules(decide: DecideFn) -> Result<usize, String> {
        let verdicts = [
            ("approved", verdict(vec![], true)),
            ("missing", verdict(vec![missing()], true)),
            ("missing-no-pin", verdict(vec![missing()], false)),
            ("floor", verdict(vec![floor()], true)),
            ("floor+missing", verdict(vec![missing(), floor()], false)),
            (
                "undisclosed",
                ApprovalVerdict {
                    approved: false,
                    reasons: vec![],
                    user_consent_needs_pin: false,
                },
            ),
            ("no-rule", verdict(vec![RefusalReason::NoRule], false)),
            (
                "bad-signature",
                verdict(vec![RefusalReason::BadSignature("owner".into())], false),
            ),
            (
                "unknown",
                verdict(vec![RefusalReason::UnknownApprover("bob".into())], false),
            ),
        ];
        let mut seen = 0;
        for (name, v) in &verdicts {
            for mcu in [None, Some(report(true)), Some(report(false))] {
                for p in policies() {
                    seen += 1;
                    let d = decide(v, mcu.as_ref(), &p);
                    let mcu_bad = mcu.as_ref().is_some_and(|r| !r.ok());
                    let floorish = v
                        .reasons
                        .iter()
                        .any(|r| matches!(r, RefusalReason::BelowFloor(_)))
                        || (!v.approved && v.reasons.is_empty());
                    let ctx = format!("{name} mcuboot={mcu:?} {p:?} -> {d:?}");
                    if v.approved && !mcu_bad {
                        if d != Decision::Approved {
                            return Err(ctx);
                        }
                        continue;
                    }
                    let expected_final = if mcu_bad {
                        Some(Final::McubootFailed)
                    } else if floorish && !p.allow_below_floor {
                        Some(Final::BelowFloor)
                    } else if p.on_unapproved == OnUnapproved::Reject {
                        Some(Final::PolicyRejects)
                    } else {
                        None
                    };
                    let fine = match (expected_final, &d) {
                        (Some(c), Decision::Refused { cause, reasons }) => {
                            *cause == c && !reasons.is_empty()
                        }
                        (None, Decision::AskUser { needs_pin, .. }) => {
                            *needs_pin == v.user_consent_needs_pin
                        }
                        _ => false,
                    };
                    // Consent never turns a final refusal into an installation.
                    let consent_safe = !matches!(d, Decision::Refused { .. })
                        || (d.answered(true) == Outcome::Refused && !d.answered(true).install());
                    if !fine || !consent_safe {
                        return Err(ctx);
                    }
                }
            }
        }
        Ok(seen)
    }

    /// Every verdict × MCUboot report × policy, against the rules written out.
    #[test]
    fn every_combination() {
        assert_eq!(check_rules(decide), Ok(9 * 3 * 4));
    }

    /// The checker is not blind: a decision that lets the user accept a
    /// package below the floor (the old behaviour) fails it.
    #[test]
    fn a_consent_override_of_the_floor_fails_the_rules() {
        fn broken(v: &ApprovalVerdict, m: Option<&McubootReport>, p: &ConsentPolicy) -> Decision {
            let lenient = ConsentPolicy {
                allow_below_floor: true,
                ..*p
            };
            decide(v, m, &lenient)
        }
        let err = check_rules(broken).expect_err("the broken variant is caught");
        assert!(err.contains("floor"), "{err}");
    }

    #[test]
    fn below_floor_is_never_installed_by_consent_without_the_setting() {
        let v = verdict(vec![floor()], false);
        let ask = ConsentPolicy {
            on_unapproved: OnUnapproved::Ask,
            allow_below_floor: false,
        };
        let d = decide(&v, None, &ask);
        assert!(
            matches!(
                d,
                Decision::Refused {
                    cause: Final::BelowFloor,
                    ..
                }
            ),
            "{d:?}"
        );
        assert_eq!(d.answered(true), Outcome::Refused);
        let dangerous = ConsentPolicy {
            allow_below_floor: true,
            ..ask
        };
        let d = decide(&v, None, &dangerous);
        assert!(matches!(d, Decision::AskUser { .. }), "{d:?}");
        assert_eq!(d.answered(true), Outcome::AcceptedByUser);
        assert_eq!(d.answered(false), Outcome::DeclinedByUser);
    }

    #[test]
    fn outcomes_and_reasons_read_as_before() {
        assert_eq!(Outcome::Approved.word(), "approved");
        assert_eq!(Outcome::Refused.word(), "refused");
        assert_eq!(Outcome::AcceptedByUser.word(), "accepted-by-user");
        assert_eq!(Outcome::DeclinedByUser.word(), "declined-by-user");
        assert!(Outcome::AcceptedByUser.install() && !Outcome::DeclinedByUser.install());
        let d = decide(
            &verdict(vec![floor()], false),
            Some(&report(false)),
            &ConsentPolicy::default(),
        );
        let words: Vec<String> = d.reasons().iter().map(ToString::to_string).collect();
        assert_eq!(
            words,
            [
                "version below the anti-rollback floor 2.1.0",
                "MCUboot image check failed: hash Invalid, signature NotChecked"
            ]
        );
    }
}
