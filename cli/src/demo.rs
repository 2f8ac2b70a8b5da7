//! `dmsc demo`: every use case the card supports today, step by step, on an
//! embedded simulated card.
//!
//! Each step is a small function that uses the library the way device or
//! provisioning software would: a [`Session`](dmsc_host::Session) with the
//! typed [`CardCommands`], [`open_secure_channel`](dmsc_host::open_secure_channel)
//! for authorities, and the `dmsc-card-model` types. Each result is checked;
//! the demo fails (exit code 6) when any result is not the expected one.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dmsc_host::card_model::commands::{
    Approval, ApprovalRule, AuditEntry, AuditEvent, BootstrapKeyValue, MoRecord, ObjectValue,
    PackageId, Pin, RefusalReason, AID, APPLET_VERSION,
};
use dmsc_host::card_model::objects::{
    MacAlgorithm, ObjectKind, ObjectRef, Principal, Right, Version,
};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::sim_transport::FileSimTransport;
use dmsc_host::{AuthorityKeySet, CardCommands, HostError, PinStatus};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cmd::info::{algorithm_names, pin_text};
use crate::cmd::sim::init_params;
use crate::context::{open_authority, CardSession, Ctx};
use crate::exit::Code;
use crate::output::{hex_upper, print_json};
use crate::secrets::{KeyTriple, TEST_KEY_VERSION};

mod governance;

// ---- the demo's data ---------------------------------------------------------

const PIN: &[u8] = b"123456";
const PUK: &[u8] = b"12345678";
const WRONG_PIN: &[u8] = b"000000";
const AUTHORITY: &str = "admin";
const MO_URI: &str = "./DMAcc/DemoServer";
const MO_TYPE: &str = "urn:oma:mo:oma-dm-dmacc:1.0";
/// A small TNDS (OMA DM Tree and Description Serialization) subtree.
const MO_TNDS: &str = r#"<MgmtTree xmlns="syncml:dmddf1.2">
  <VerDTD>1.2</VerDTD>
  <Node><NodeName>DemoServer</NodeName>
    <Node><NodeName>ServerID</NodeName><Value>dm.example.com</Value></Node>
    <Node><NodeName>AppAddr</NodeName><Value>https://dm.example.com/dm</Value></Node>
    <Node><NodeName>AAuthPref</NodeName><Value>HMAC</Value></Node>
  </Node>
</MgmtTree>
"#;
const POLICY: &str = "enterprise-policy/1\ncamera=off when weekday 08:00-18:00\n\
                      bluetooth=off at site:HQ\nusb-storage=off\n";
const BOOTSTRAP_KEY_ID: u8 = 1;
const BOOTSTRAP_PACKET: &[u8] =
    b"bootstrap/1 ServerID=dm.example.com AppAddr=https://dm.example.com/dm AAuthPref=HMAC";
const DEVICE_CLASS: &str = "gateway";
const APPROVERS: [&str; 2] = ["maintainer", "owner"];
const LEVEL_ALL: u8 = 0x33;

// ---- the report ----------------------------------------------------------------

#[derive(Serialize)]
struct Check {
    action: String,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
    ok: bool,
}

#[derive(Serialize)]
struct Step {
    step: usize,
    title: String,
    ok: bool,
    results: Vec<Check>,
}

#[derive(Serialize)]
struct DemoJson<'a> {
    card: String,
    kept: bool,
    ok: bool,
    checks: usize,
    failed: usize,
    steps: &'a [Step],
}

/// Collects each step's results and prints them as they come (text mode).
struct Report {
    json: bool,
    steps: Vec<Step>,
}

impl Report {
    fn begin(&mut self, title: &str) {
        let step = self.steps.len() + 1;
        if !self.json {
            println!("\n{step}. {title}");
        }
        self.steps.push(Step {
            step,
            title: title.to_string(),
            ok: true,
            results: Vec::new(),
        });
    }

    fn record(&mut self, action: &str, result: String, expected: Option<String>, ok: bool) {
        if !self.json {
            let mark = if ok { "ok" } else { "FAILED" };
            match (&expected, ok) {
                (Some(e), false) => println!("   [{mark}] {action}: {result} (expected: {e})"),
                _ => println!("   [{mark}] {action}: {result}"),
            }
        }
        let step = self.steps.last_mut().expect("a step has begun");
        step.ok &= ok;
        step.results.push(Check {
            action: action.to_string(),
            result,
            expected,
            ok,
        });
    }

    /// A result that needs no check.
    fn note(&mut self, action: &str, result: impl Display) {
        self.record(action, result.to_string(), None, true);
    }

    /// A result checked against what was expected.
    fn expect(&mut self, action: &str, result: impl Display, ok: bool, expected: impl Display) {
        self.record(action, result.to_string(), Some(expected.to_string()), ok);
    }

    /// A card operation expected to succeed; returns its value when it did.
    fn expect_ok<T>(
        &mut self,
        action: &str,
        r: Result<T, HostError>,
        says: impl Display,
    ) -> Option<T> {
        match r {
            Ok(v) => {
                self.expect(action, says, true, "success");
                Some(v)
            }
            Err(e) => {
                self.expect(action, e, false, "success");
                None
            }
        }
    }

    fn failed(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.results)
            .filter(|c| !c.ok)
            .count()
    }

    fn checks(&self) -> usize {
        self.steps.iter().map(|s| s.results.len()).sum()
    }
}

/// What a refused operation's result looks like in the report.
fn outcome<T>(r: &Result<T, HostError>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(e) => format!("refused: {e}"),
    }
}

// ---- what the steps share ------------------------------------------------------

/// A firmware approver: its registered name and its P-256 signing key.
struct Approver {
    name: &'static str,
    key: SigningKey,
}

impl Approver {
    fn new(name: &'static str) -> Result<Approver> {
        Ok(Approver {
            name,
            key: random_signing_key()?,
        })
    }

    /// The uncompressed SEC1 public key the card stores.
    fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// Signs the approval statement of `package` (ECDSA P-256, SHA-256, DER).
    fn approve(&self, package: &PackageId) -> Approval {
        let statement = package.statement(self.name).to_signed_bytes();
        let signature: Signature = self.key.sign(&statement);
        Approval {
            approver: self.name.to_string(),
            signature: signature.to_der().as_bytes().to_vec(),
        }
    }
}

fn random_signing_key() -> Result<SigningKey> {
    loop {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(secret.as_mut()).context("no operating-system randomness")?;
        if let Ok(key) = SigningKey::from_slice(secret.as_ref()) {
            return Ok(key);
        }
    }
}

/// The card and what the demo plays on the other side: the authority's keys,
/// the bootstrap key the network shares with the card, the two approvers.
struct World {
    card: CardSession,
    authority: AuthorityKeySet,
    bootstrap_key: Zeroizing<Vec<u8>>,
    approvers: [Approver; 2],
    first_generation: u64,
}

impl World {
    fn pin() -> Pin {
        Pin::new(PIN).expect("the demo PIN is valid")
    }

    /// Opens an SCP03 session as the authority (C-MAC, C-DEC, R-MAC, R-ENC).
    fn as_authority(&mut self, r: &mut Report) -> Result<()> {
        let level = SecurityLevel::new(LEVEL_ALL).expect("33 is a valid level");
        let info = open_authority(&mut self.card, &self.authority, level)?;
        r.note(
            "open an SCP03 session as the authority",
            format!(
                "{AUTHORITY}, key version {:02X}, security level 33",
                info.key_version
            ),
        );
        Ok(())
    }

    /// Back to the plain device session (SELECT ends the authority session and the PIN).
    fn as_device(&mut self) -> Result<()> {
        self.card.select().context("SELECT")?;
        Ok(())
    }
}

// ---- the steps -------------------------------------------------------------------

/// 1. Create the card, power it up, SELECT: identity, generation, capabilities.
fn power_up(r: &mut Report, ctx: &Ctx, path: &Path) -> Result<World> {
    let keys = KeyTriple::test_keys();
    let params = init_params(AUTHORITY, TEST_KEY_VERSION, &keys, PIN, PUK);
    let transport = FileSimTransport::create(path, params)
        .with_context(|| format!("cannot create the card {}", path.display()))?;
    r.note(
        "create a card (authority admin with the test keys, key version 30; PIN 123456)",
        path.display(),
    );
    let mut card = ctx.session(Box::new(transport));
    let info = card.select().context("SELECT")?;
    r.note("SELECT the applet", format!("AID {}", hex_upper(&AID)));
    r.note("card ID", hex_upper(&info.card_id));
    let version = format!("{}.{}", info.applet_version.0, info.applet_version.1);
    r.expect(
        "applet version",
        &version,
        info.applet_version == APPLET_VERSION,
        format!("{}.{}", APPLET_VERSION.0, APPLET_VERSION.1),
    );
    r.expect(
        "generation",
        info.generation,
        info.generation >= 1,
        "at least 1",
    );
    r.note(
        "capabilities",
        format!(
            "{}; APDUs up to {}/{} bytes, extended length {}",
            algorithm_names(info.algorithms).join(", "),
            info.max_command,
            info.max_response,
            info.extended_length
        ),
    );
    r.note(
        "memory",
        format!("{} of {} bytes free", info.free_memory, info.total_memory),
    );
    Ok(World {
        card,
        authority: AuthorityKeySet {
            key_version: TEST_KEY_VERSION,
            keys: keys.static_keys()?,
        },
        bootstrap_key: Zeroizing::new(random_bytes(32)?),
        approvers: [Approver::new(APPROVERS[0])?, Approver::new(APPROVERS[1])?],
        first_generation: info.generation,
    })
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).context("no operating-system randomness")?;
    Ok(b)
}

/// 2. The user PIN: tries left, a wrong PIN costs a try, the right one verifies.
fn user_pin(r: &mut Report, w: &mut World) -> Result<()> {
    let status = w.card.pin_tries()?;
    r.expect(
        "PIN tries left",
        pin_text(status),
        status == PinStatus::NotVerified { tries_left: 3 },
        "3 tries left",
    );
    let wrong = Pin::new(WRONG_PIN)?;
    let result = w.card.verify_pin(&wrong);
    r.expect(
        "VERIFY a wrong PIN",
        outcome(&result),
        matches!(result, Err(HostError::WrongPin { tries_left: 2, .. })),
        "refused, 2 tries left (SW 63C2)",
    );
    let status = w.card.pin_tries()?;
    r.expect(
        "PIN tries left",
        pin_text(status),
        status == PinStatus::NotVerified { tries_left: 2 },
        "2 tries left",
    );
    let result = w.card.verify_pin(&World::pin());
    r.expect_ok("VERIFY the right PIN", result, "verified");
    let status = w.card.pin_tries()?;
    r.expect(
        "PIN state",
        pin_text(status),
        status == PinStatus::Verified,
        "verified (the try counter is back to 3)",
    );
    Ok(())
}

/// 3. The authority stores an MO, the enterprise policy, a bootstrap key, two
///    approvers and the approval rule, over SCP03.
fn provision(r: &mut Report, w: &mut World) -> Result<()> {
    w.as_authority(r)?;
    let mo = ObjectValue::Mo(MoRecord {
        mo_type: MO_TYPE.into(),
        version: 0, // the card numbers versions itself
        content: MO_TNDS.as_bytes().to_vec(),
    });
    let put = w.card.put_object(&ObjectRef::Mo(MO_URI.into()), &mo, None);
    r.expect_ok(
        &format!("store the MO record {MO_URI}"),
        put,
        format!("{MO_TYPE}, {} bytes of TNDS", MO_TNDS.len()),
    );
    let policy = ObjectValue::Policy(POLICY.as_bytes().to_vec());
    let put = w.card.put_object(&ObjectRef::Policy, &policy, None);
    r.expect_ok(
        "store the enterprise policy",
        put,
        format!("{} bytes", POLICY.len()),
    );
    let key = ObjectValue::BootstrapKey(BootstrapKeyValue {
        algorithm: MacAlgorithm::HmacSha256,
        key: Some(w.bootstrap_key.clone()),
    });
    let put = w
        .card
        .put_object(&ObjectRef::BootstrapKey(BOOTSTRAP_KEY_ID), &key, None);
    r.expect_ok(
        "store bootstrap key 1 (HMAC-SHA256; travels encrypted, never readable)",
        put,
        "stored",
    );
    for a in &w.approvers {
        let put = w.card.put_object(
            &ObjectRef::Approver(a.name.into()),
            &ObjectValue::Approver(a.public_key()),
            None,
        );
        r.expect_ok(
            &format!("register approver {} (P-256 public key)", a.name),
            put,
            "stored",
        );
    }
    let rule = ObjectValue::ApprovalRule(ApprovalRule {
        required: APPROVERS.iter().map(|s| s.to_string()).collect(),
        user_consent_needs_pin: true,
    });
    let put = w.card.put_object(&ObjectRef::ApprovalRule, &rule, None);
    r.expect_ok(
        "store the approval rule",
        put,
        format!("both {} and {} must approve", APPROVERS[0], APPROVERS[1]),
    );
    Ok(())
}

/// 4. Device side: refresh — one SELECT says whether anything changed; then the
///    MO list and the MO itself.
fn refresh(r: &mut Report, w: &mut World) -> Result<()> {
    let info = w.card.select().context("SELECT")?;
    r.expect(
        "SELECT: generation",
        format!("{} (was {})", info.generation, w.first_generation),
        info.generation > w.first_generation,
        "higher than at power-up: refresh needed",
    );
    let list = w.card.list(ObjectKind::Mo)?;
    let names: Vec<String> = list.iter().map(|e| e.object.to_string()).collect();
    r.expect(
        "list the MO records",
        names.join(", "),
        names == [format!("mo:{MO_URI}")],
        format!("mo:{MO_URI}"),
    );
    let data = w.card.read_object(&ObjectRef::Mo(MO_URI.into()))?;
    let ok = matches!(&data.value, ObjectValue::Mo(m)
        if m.content == MO_TNDS.as_bytes() && m.version == 1 && m.mo_type == MO_TYPE);
    r.expect(
        "read the MO back",
        format!("version {}, ACL {}", mo_version(&data.value), data.acl),
        ok,
        "the stored TNDS, version 1",
    );
    Ok(())
}

fn mo_version(v: &ObjectValue) -> String {
    match v {
        ObjectValue::Mo(m) => m.version.to_string(),
        other => format!("not an MO ({})", other.kind().word()),
    }
}

/// 5. HTTP bootstrap: the network MACs the bootstrap packet with the key it
///    shares with the card; the card verifies it (the key never leaves the card).
fn bootstrap(r: &mut Report, w: &mut World) -> Result<()> {
    let mac = hmac_sha256(&w.bootstrap_key, BOOTSTRAP_PACKET);
    r.note(
        "the network computes HMAC-SHA256 of the bootstrap packet",
        hex_upper(&mac),
    );
    let verified = w
        .card
        .verify_mac(BOOTSTRAP_KEY_ID, BOOTSTRAP_PACKET, &mac)?;
    r.expect("the card verifies the MAC", verified, verified, true);
    let mut tampered = BOOTSTRAP_PACKET.to_vec();
    tampered[10] ^= 0x01;
    let verified = w.card.verify_mac(BOOTSTRAP_KEY_ID, &tampered, &mac)?;
    r.expect(
        "a tampered packet with the same MAC",
        verified,
        !verified,
        false,
    );
    Ok(())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A package of `version` for the demo's device class: its SHA-256 and version.
fn package(version: &str) -> Result<PackageId> {
    let image: Vec<u8> = format!("dmsc demo firmware {version}\n")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(64 * 1024)
        .collect();
    Ok(PackageId {
        digest: Sha256::digest(&image).into(),
        version: Version::parse(version)?,
        device_class: DEVICE_CLASS.into(),
    })
}

/// 6. Firmware approval: both approvers sign, the card checks; one approval
///    is not enough; installing moves the anti-rollback floor.
fn firmware(r: &mut Report, w: &mut World) -> Result<()> {
    let new = package("2.1.0")?;
    r.note(
        "hash the package (SHA-256)",
        format!(
            "{DEVICE_CLASS} 2.1.0, {}",
            hex_upper(&new.digest[..8]) + "…"
        ),
    );
    let [maintainer, owner] = &w.approvers;
    let verdict = w.card.check_approval(&new, &[maintainer.approve(&new)])?;
    let missing_owner = RefusalReason::MissingApprover(owner.name.into());
    r.expect(
        "CHECK APPROVAL with the maintainer's approval only",
        verdict_text(&verdict.approved, &verdict.reasons),
        !verdict.approved && verdict.reasons == [missing_owner.clone()],
        format!("refused: {missing_owner}"),
    );
    let both = [maintainer.approve(&new), owner.approve(&new)];
    let verdict = w.card.check_approval(&new, &both)?;
    r.expect(
        "CHECK APPROVAL with both approvals",
        verdict_text(&verdict.approved, &verdict.reasons),
        verdict.approved,
        "approved",
    );
    let confirmed = w.card.confirm_installed(&new);
    r.expect_ok("CONFIRM INSTALLED 2.1.0", confirmed, "recorded");
    let floor = w.card.read_object(&ObjectRef::Floor(DEVICE_CLASS.into()))?;
    let expected = ObjectValue::Floor(new.version.clone());
    r.expect(
        "the anti-rollback floor of gateway",
        floor_text(&floor.value),
        floor.value == expected,
        "2.1.0",
    );
    let old = package("2.0.0")?;
    let verdict = w
        .card
        .check_approval(&old, &[maintainer.approve(&old), owner.approve(&old)])?;
    let below = RefusalReason::BelowFloor(new.version.clone());
    r.expect(
        "CHECK APPROVAL of the older 2.0.0, approved by both",
        verdict_text(&verdict.approved, &verdict.reasons),
        !verdict.approved && verdict.reasons == [below.clone()],
        format!("refused: {below}"),
    );
    Ok(())
}

fn verdict_text(approved: &bool, reasons: &[RefusalReason]) -> String {
    if *approved {
        return "approved".into();
    }
    let reasons: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
    format!("refused: {}", reasons.join("; "))
}

fn floor_text(v: &ObjectValue) -> String {
    match v {
        ObjectValue::Floor(v) => v.to_string(),
        other => format!("not a floor ({})", other.kind().word()),
    }
}

/// 7. Access control: the device may not write; the authority changes an ACL;
///    repeated failures raise an alarm in the audit log.
fn access_control(r: &mut Report, w: &mut World) -> Result<()> {
    let mo = ObjectRef::Mo(MO_URI.into());
    let update = ObjectValue::Mo(MoRecord {
        mo_type: MO_TYPE.into(),
        version: 0,
        content: MO_TNDS
            .replace("dm.example.com", "dm2.example.com")
            .into_bytes(),
    });
    w.as_device()?;
    let result = w.card.put_object(&mo, &update, None);
    r.expect(
        "the device replaces the MO without authority",
        outcome(&result),
        matches!(result, Err(HostError::SecurityStatusNotSatisfied { .. })),
        "refused (SW 6982)",
    );

    w.as_authority(r)?;
    let mut acl = w.card.read_object(&mo)?.acl;
    acl.grant(Right::Replace, Principal::User);
    let changed = w.card.set_acl(&mo, &acl);
    r.expect_ok(
        "the authority lets the user replace the MO",
        changed,
        format!("ACL {acl}"),
    );

    w.as_device()?;
    w.card.verify_pin(&World::pin()).context("VERIFY")?;
    let result = w.card.put_object(&mo, &update, None);
    r.expect_ok("the user (PIN verified) replaces the MO", result, "stored");
    let data = w.card.read_object(&mo)?;
    r.expect(
        "MO version",
        mo_version(&data.value),
        matches!(&data.value, ObjectValue::Mo(m) if m.version == 2),
        2,
    );

    let policy = ObjectValue::Policy(b"enterprise-policy/1\ncamera=on\n".to_vec());
    for attempt in 1..=4 {
        let result = w.card.put_object(&ObjectRef::Policy, &policy, None);
        r.expect(
            &format!("the user tries to replace the policy ({attempt} of 4)"),
            outcome(&result),
            matches!(result, Err(HostError::SecurityStatusNotSatisfied { .. })),
            "refused (SW 6982)",
        );
    }
    w.as_authority(r)?;
    let alarms: Vec<AuditEntry> = audit_entries(w)?
        .into_iter()
        .filter(|e| e.event == AuditEvent::Alarm && e.principal == "user")
        .collect();
    r.expect(
        "the audit log holds an alarm for the user",
        alarms
            .last()
            .map(entry_summary)
            .unwrap_or_else(|| "no alarm".into()),
        alarms.len() == 1 && alarms[0].detail.starts_with("4 "),
        "one alarm: 4 consecutive authorisation failures",
    );
    Ok(())
}

/// An audit entry in one line: event, principal, session, detail.
fn entry_summary(e: &AuditEntry) -> String {
    format!(
        "{} by {} (session {:06X}): {}",
        e.event.name(),
        e.principal,
        e.session,
        e.detail
    )
}

fn audit_entries(w: &mut World) -> Result<Vec<AuditEntry>> {
    match w.card.read_audit_log(None)?.value {
        ObjectValue::AuditLog(entries) => Ok(entries),
        other => anyhow::bail!("the audit log read as {}", other.kind().word()),
    }
}

/// 8. The last audit entries, as the authority reads them.
fn audit_tail(r: &mut Report, w: &mut World) -> Result<()> {
    let entries = audit_entries(w)?;
    r.expect(
        "read the audit log",
        format!("{} entries", entries.len()),
        !entries.is_empty(),
        "entries",
    );
    let start = entries.len().saturating_sub(12);
    for e in &entries[start..] {
        r.note(&format!("#{}", e.sequence), entry_summary(e));
    }
    Ok(())
}

// ---- running it ------------------------------------------------------------------

/// Runs every step and reports; `Ok(Code::VerificationFailed)` when a check failed.
pub fn run(ctx: &Ctx, keep: bool) -> Result<Code> {
    // A card given with --sim on the command line, or a fresh temporary one.
    let (tmp, path): (Option<tempfile::TempDir>, PathBuf) = match (
        &ctx.sim,
        ctx.sim_on_command_line,
    ) {
        (Some(path), true) => {
            if std::fs::symlink_metadata(path).is_ok() {
                anyhow::bail!(
                    "{} already exists; the demo creates a fresh card: remove it or give another path",
                    path.display()
                );
            }
            (None, path.clone())
        }
        _ => {
            let dir = tempfile::Builder::new()
                .prefix("dmsc-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            let path = dir.path().join("card.state");
            (Some(dir), path)
        }
    };
    let mut r = Report {
        json: ctx.json,
        steps: Vec::new(),
    };
    if !ctx.json {
        println!(
            "dmsc demo: every use case on a simulated card ({})",
            path.display()
        );
    }

    r.begin("Create and power up the card; SELECT: identity, generation, capabilities");
    let world = power_up(&mut r, ctx, &path);
    run_steps(&mut r, world); // the card is closed when this returns

    // A card given with --sim stays; a temporary one only with --keep.
    let kept = match tmp {
        Some(dir) if keep => Some(dir.keep().join("card.state")),
        Some(_) => None,
        None => Some(path.clone()),
    };
    let failed = r.failed();
    if ctx.json {
        print_json(&DemoJson {
            card: kept.as_ref().unwrap_or(&path).display().to_string(),
            kept: kept.is_some(),
            ok: failed == 0,
            checks: r.checks(),
            failed,
            steps: &r.steps,
        })?;
    } else {
        println!();
        if failed == 0 {
            println!("all {} checks passed", r.checks());
        } else {
            println!("{failed} of {} checks FAILED", r.checks());
        }
        if let Some(p) = &kept {
            println!("card state kept in {}", p.display());
        }
    }
    Ok(if failed == 0 {
        Code::Ok
    } else {
        Code::VerificationFailed
    })
}

/// Steps 2 to 8; an unexpected error ends its step as a failed check and the
/// demo goes on with the next one.
fn run_steps(r: &mut Report, world: Result<World>) {
    let mut w = match world {
        Ok(w) => w,
        Err(e) => {
            r.record("power up", crate::exit::describe(&e), None, false);
            return;
        }
    };
    type StepFn = fn(&mut Report, &mut World) -> Result<()>;
    let steps: [(&str, StepFn); 8] = [
        ("User PIN: tries left, a wrong PIN, the right PIN", user_pin),
        (
            "Authority (SCP03, level 33) stores an MO, the policy, a bootstrap key, \
             two approvers and the approval rule",
            provision,
        ),
        ("Device refresh: generation, MO list, the MO", refresh),
        (
            "HTTP bootstrap: the card verifies the packet's MAC",
            bootstrap,
        ),
        (
            "Firmware approval: two approvers, anti-rollback floor",
            firmware,
        ),
        (
            "Access control: device write refused, ACL change, failure alarm",
            access_control,
        ),
        (
            "Access governance: authorities by PUT KEY, ACL grant, failure limit, alarms",
            governance::governance,
        ),
        ("The last audit entries", audit_tail),
    ];
    for (title, step) in steps {
        r.begin(title);
        if let Err(e) = step(r, &mut w) {
            r.record("step ended early", crate::exit::describe(&e), None, false);
        }
    }
}
