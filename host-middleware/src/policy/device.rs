//! The device side: apply the card's policy to the device, record
//! administrators' commands, and write the report for the DM server.
//!
//! Everything this module stores goes through [`write_device_file`] into
//! `DIR/policy/` (`resources.json`, `report.json`, `commands.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::card::{card_verifies, read_verified, VerifiedPolicy};
use super::engine::{evaluate, next_change, next_reevaluation, Context, Decision, Override};
use super::signing::SignedCommand;
use super::{Malformation, PolicyError, Refusal, SignatureIssue};
use crate::CardCommands;

/// The folder, under the device directory, of everything policy writes.
pub const POLICY_DIR: &str = "policy";
/// The resource states the device applies.
pub const RESOURCES_FILE: &str = "resources.json";
/// The report for the DM server.
pub const REPORT_FILE: &str = "report.json";
/// Accepted administrators' commands and the replay counter.
pub const COMMANDS_FILE: &str = "commands.json";

/// Writes one file of the policy's device state, `DIR/policy/NAME`, atomically
/// ([`crate::files::write_atomically`]). The policy state sits beside the MO
/// trees of the device tree (docs/device-tree.md), not inside them: it is not
/// an MO, and a refresh never touches it.
pub fn write_device_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, PolicyError> {
    let created = create_policy_folder(dir)?;
    let path = write_with(dir, name, bytes, crate::files::write_atomically)?;
    if created {
        sync_new_folder(dir)?;
    }
    Ok(path)
}

/// Creates `DIR/policy/` if it is missing (not yet durable: the caller makes
/// it so with [`sync_new_folder`] after writing into it); `true` if created.
fn create_policy_folder(dir: &Path) -> Result<bool, PolicyError> {
    let folder = dir.join(POLICY_DIR);
    if folder.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(&folder).map_err(|source| PolicyError::Io {
        step: "creating",
        path: folder.clone(),
        source: Arc::new(source),
    })?;
    Ok(true)
}

/// One `syncfs` after the first writes into a new `DIR/policy/`: the files,
/// the folder's entries and the folder's own entry in `DIR` become durable
/// together, so that creating the folder costs no sync more than a change.
fn sync_new_folder(dir: &Path) -> Result<(), PolicyError> {
    crate::files::sync_file_system(&dir.join(POLICY_DIR)).map_err(|e| PolicyError::Io {
        step: e.step,
        path: e.path,
        source: Arc::new(e.source),
    })
}

fn write_with(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    write: fn(&Path, &[u8]) -> Result<(), crate::files::FileError>,
) -> Result<PathBuf, PolicyError> {
    let path = dir.join(POLICY_DIR).join(name);
    write(&path, bytes).map_err(|e| PolicyError::Io {
        step: "writing",
        path: path.clone(),
        source: Arc::new(e.source),
    })?;
    Ok(path)
}

/// Reads one file of the policy's device state, `None` if absent.
pub fn read_device_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, PolicyError> {
    let path = dir.join(POLICY_DIR).join(name);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PolicyError::Io {
            step: "reading",
            path: path.clone(),
            source: Arc::new(source),
        }),
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The recorded commands (`commands.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommandState {
    /// 1.
    pub schema_version: u32,
    /// The highest counter ever accepted (replay protection; kept across policies).
    pub last_counter: u64,
    /// The policy the overrides belong to.
    pub policy: Option<String>,
    /// Commands in force or not yet expired.
    pub overrides: Vec<Override>,
}

impl CommandState {
    /// Loads `commands.json` (empty state if absent).
    pub fn load(dir: &Path) -> Result<CommandState, PolicyError> {
        match read_device_file(dir, COMMANDS_FILE)? {
            None => Ok(CommandState {
                schema_version: 1,
                ..CommandState::default()
            }),
            Some(b) => serde_json::from_slice(&b).map_err(|source| {
                PolicyError::Malformed(Malformation::CommandsFile {
                    path: format!("{POLICY_DIR}/{COMMANDS_FILE}"),
                    source: Arc::new(source),
                })
            }),
        }
    }

    /// The overrides that belong to `digest` (a new policy drops them).
    pub fn overrides_for(&self, digest: &str) -> Vec<Override> {
        if self.policy.as_deref() == Some(digest) {
            self.overrides.clone()
        } else {
            Vec::new()
        }
    }
}

/// Checks a signed command against the card and the device's state, and
/// records it. Nothing is recorded when any check fails.
pub fn accept_command(
    card: &mut impl CardCommands,
    dir: &Path,
    cmd: &SignedCommand,
    now: Timestamp,
) -> Result<(Override, VerifiedPolicy), PolicyError> {
    let (statement, signature) = cmd.parts()?;
    let verified = read_verified(card)?;
    if !card_verifies(card, statement.to_text().as_bytes(), &signature)? {
        return Err(PolicyError::BadSignature(
            SignatureIssue::CommandRefusedByCard,
        ));
    }
    let refuse = |r| Err(PolicyError::CommandRefused(r));
    if statement.policy != verified.digest {
        return refuse(Refusal::OtherPolicy {
            command: statement.policy.clone(),
            card: verified.digest.clone(),
        });
    }
    if now > statement.not_after {
        return refuse(Refusal::Expired(statement.not_after));
    }
    if !verified.policy.manages(&statement.resource) {
        return refuse(Refusal::Unmanaged(statement.resource.clone()));
    }
    let mut state = CommandState::load(dir)?;
    if statement.counter <= state.last_counter {
        return refuse(Refusal::Replay {
            counter: statement.counter,
            last: state.last_counter,
        });
    }
    let o = Override {
        resource: statement.resource.clone(),
        state: statement.action,
        until: statement.until,
        counter: statement.counter,
    };
    let mut overrides = state.overrides_for(&verified.digest);
    overrides.retain(|x| x.until.is_none_or(|u| u > now));
    overrides.push(o.clone());
    state.schema_version = 1;
    state.last_counter = statement.counter;
    state.policy = Some(verified.digest.clone());
    state.overrides = overrides;
    write_device_file(dir, COMMANDS_FILE, &to_json(&state))?;
    Ok((o, verified))
}

/// One applied decision in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
    /// Whether the state differs from what the device had before.
    pub changed: bool,
}

/// A failure in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// `policy`, `signature`, `card`, `command`, `device`.
    pub stage: &'static str,
    /// What went wrong: the error [`enforce`] returned (the policy could not
    /// be read, verified or validated; or `resources.json` could not be
    /// written). Serialised as `message`, its text.
    #[serde(rename = "message", serialize_with = "as_text")]
    pub cause: PolicyError,
}

fn as_text<S: serde::Serializer>(cause: &PolicyError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(cause)
}

/// The policy as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ReportPolicy {
    /// Its name.
    pub name: String,
    /// Its serial.
    pub serial: u64,
    /// `sha256:…` of the policy file.
    pub digest: String,
    /// Fingerprint of the card's enterprise key that verified it.
    pub key_fingerprint: String,
    /// Its time zone (IANA name): the zone local times are shown in.
    pub timezone: String,
}

/// The report for the DM server (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// 1.
    pub schema_version: u32,
    /// `applied` or `refused`.
    pub status: &'static str,
    /// The instant the decisions are for.
    pub at: Timestamp,
    /// The card, when it was read.
    pub card_id: Option<String>,
    /// Its generation counter.
    pub generation: Option<u64>,
    /// The policy, when it verified.
    pub policy: Option<ReportPolicy>,
    /// The decisions applied (empty when refused).
    pub applied: Vec<Applied>,
    /// What failed.
    pub failures: Vec<Failure>,
    /// When the state of a resource changes next, if ever.
    pub next_change: Option<Timestamp>,
    /// When any decision changes next (a state, or what decided it), if ever:
    /// the instant at which a watch applies the policy again, so that this
    /// report never names a rule or command no longer in force.
    pub next_reevaluation: Option<Timestamp>,
}

/// The resource states the device applies (`resources.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceStates {
    /// 1.
    pub schema_version: u32,
    /// The policy they come from.
    pub policy: String,
    /// When they were decided.
    pub at: Timestamp,
    /// Resource → `enabled`/`disabled`.
    pub resources: std::collections::BTreeMap<String, super::State>,
}

fn stage(e: &PolicyError) -> &'static str {
    match e {
        PolicyError::Invalid { .. } | PolicyError::NotUtf8 | PolicyError::Malformed(_) => "policy",
        PolicyError::BadSignature(_) | PolicyError::Key(_) => "signature",
        PolicyError::Missing(_) | PolicyError::Card(_) => "card",
        PolicyError::CommandRefused(_) => "command",
        PolicyError::Io { .. } => "device",
    }
}

/// Reads and verifies the card's policy, decides every resource for `ctx`
/// (its overrides are replaced by the device's recorded commands) and writes
/// `resources.json` and `report.json`.
///
/// When the policy cannot be read, does not verify or does not validate,
/// nothing is applied: `resources.json` stays as it was and the report says
/// `refused`; the error is returned after the report is written.
pub fn enforce(
    card: &mut impl CardCommands,
    dir: &Path,
    ctx: &Context,
) -> Result<Report, PolicyError> {
    let verified = match read_verified(card) {
        Ok(v) => v,
        Err(cause) => {
            let report = Report {
                schema_version: 1,
                status: "refused",
                at: ctx.time,
                card_id: card.select_info().map(|i| hex::encode_upper(i.card_id)),
                generation: card.select_info().map(|i| i.generation),
                policy: None,
                applied: Vec::new(),
                failures: vec![Failure {
                    stage: stage(&cause),
                    cause: cause.clone(),
                }],
                next_change: None,
                next_reevaluation: None,
            };
            write_device_file(dir, REPORT_FILE, &to_json(&report))?;
            return Err(cause);
        }
    };
    let commands = CommandState::load(dir)?;
    let ctx = Context {
        overrides: commands.overrides_for(&verified.digest),
        ..ctx.clone()
    };
    let decisions = evaluate(&verified.policy, &ctx);
    let next = next_change(&verified.policy, &ctx);
    let reevaluation = next_reevaluation(&verified.policy, &ctx);
    let previous: Option<ResourceStates> =
        read_device_file(dir, RESOURCES_FILE)?.and_then(|b| serde_json::from_slice(&b).ok());
    let states = ResourceStates {
        schema_version: 1,
        policy: verified.digest.clone(),
        at: ctx.time,
        resources: decisions
            .iter()
            .map(|d| (d.resource.clone(), d.state))
            .collect(),
    };
    let mut failures = Vec::new();
    // Three syncs for the two files: resources.json's contents, then
    // report.json's, then one sync of DIR/policy/ (or, when this run created
    // the folder, one syncfs that also covers its entry in DIR).
    let created = create_policy_folder(dir)?;
    let written = write_with(
        dir,
        RESOURCES_FILE,
        &to_json(&states),
        crate::files::write_atomically_deferred,
    );
    if let Err(e) = &written {
        failures.push(Failure {
            stage: "device",
            cause: e.clone(),
        });
    }
    let applied = if written.is_ok() {
        decisions
            .into_iter()
            .map(|d| Applied {
                changed: previous.as_ref().and_then(|p| p.resources.get(&d.resource))
                    != Some(&d.state),
                decision: d,
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = Report {
        schema_version: 1,
        status: if failures.is_empty() {
            "applied"
        } else {
            "failed"
        },
        at: ctx.time,
        card_id: Some(verified.card_id.clone()),
        generation: Some(verified.generation),
        policy: Some(ReportPolicy {
            name: verified.policy.name.clone(),
            serial: verified.policy.serial,
            digest: verified.digest.clone(),
            key_fingerprint: verified.key_fingerprint.clone(),
            timezone: verified.policy.timezone.clone(),
        }),
        applied,
        failures,
        next_change: next,
        next_reevaluation: reevaluation,
    };
    if created {
        write_with(
            dir,
            REPORT_FILE,
            &to_json(&report),
            crate::files::write_atomically_deferred,
        )?;
        sync_new_folder(dir)?;
    } else {
        write_device_file(dir, REPORT_FILE, &to_json(&report))?;
    }
    written.map(|_| report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MissingItem;

    #[test]
    fn a_failure_is_typed_and_reported_as_its_text() {
        let failure = Failure {
            stage: "card",
            cause: PolicyError::Missing(MissingItem::ReadablePolicy),
        };
        assert!(matches!(
            failure.cause,
            PolicyError::Missing(MissingItem::ReadablePolicy)
        ));
        assert_eq!(
            serde_json::to_string(&failure).unwrap_or_default(),
            r#"{"stage":"card","message":"the card holds no policy the device may read"}"#
        );
    }

    #[test]
    fn a_device_file_error_names_the_step_and_the_file() {
        let e = PolicyError::Io {
            step: "writing",
            path: PathBuf::from("dev/policy/resources.json"),
            source: Arc::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        assert_eq!(
            e.to_string(),
            "writing dev/policy/resources.json: permission denied"
        );
        assert!(std::error::Error::source(&e).is_some());
        // The report and the caller each get the error.
        let copy = e.clone();
        assert_eq!(copy.to_string(), e.to_string());
        assert_eq!(stage(&copy), "device");
    }

    #[cfg(feature = "sim")]
    #[test]
    fn a_refused_policy_reports_the_error_enforce_returns() {
        use crate::transport::sim::SimTransport;
        use crate::Session;
        use dmsc_sim_card::{AuthorityKeys, InitParams};
        use zeroize::Zeroizing;

        let key = Zeroizing::new([0x40; 16].to_vec());
        let params = InitParams::with_authorities(vec![AuthorityKeys {
            key_version: 0x30,
            name: "admin".into(),
            enc: key.clone(),
            mac: key.clone(),
            dek: key,
        }]);
        let mut card = Session::new(SimTransport::in_memory(params).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let at: Timestamp = "2026-11-23T08:00:00Z".parse().unwrap();
        let e = enforce(&mut card, dir.path(), &Context::at(at)).unwrap_err();
        assert!(
            matches!(e, PolicyError::Missing(MissingItem::ReadablePolicy)),
            "{e:?}"
        );
        let report = read_device_file(dir.path(), REPORT_FILE).unwrap().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
        assert_eq!(report["status"], "refused");
        assert_eq!(
            report["failures"],
            serde_json::json!([{
                "stage": "card",
                "message": "the card holds no policy the device may read"
            }])
        );
    }
}
