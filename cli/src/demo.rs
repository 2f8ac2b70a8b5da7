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
use dmsc_host::bootstrap::{
    self, content_type, parse_content_type, BootstrapOutcome, MediaType, SecMethod,
};
use dmsc_host::card_model::commands::{
    AuditEntry, AuditEvent, ObjectValue, PackageId, Pin, RefusalReason, AID, APPLET_VERSION,
};
use dmsc_host::card_model::objects::{
    MacAlgorithm, ObjectKind, ObjectRef, Principal, Right, Version,
};
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::firmware::{self, ApprovalFile};
use dmsc_host::mo::{self, MgmtTree};
use dmsc_host::transport::sim::FileSimTransport;
use dmsc_host::{AuthorityKeySet, CardCommands, HostError, PinStatus, Status};
use p256::ecdsa::SigningKey;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::common::init_params;
use crate::context::{open_authority, CardSession, Ctx};
use crate::exit::Code;
use crate::output::{algorithm_names, hex_upper, pin_text, print_json};
use crate::secrets::{KeyTriple, TEST_KEY_VERSION};

mod governance;
mod policy;
mod uicc;

// ---- the demo's data ---------------------------------------------------------

const PIN: &[u8] = b"123456";
const PUK: &[u8] = b"12345678";
const WRONG_PIN: &[u8] = b"000000";
const AUTHORITY: &str = "admin";
const MO_URI: &str = "./DMAcc/DemoServer";
const MO_TYPE: &str = "urn:oma:mo:oma-dm-dmacc:1.0";
/// A small TNDS (OMA DM Tree and Description Serialization) document: one
/// MO, rooted at [`MO_URI`], of type [`MO_TYPE`].
const MO_TNDS: &str = r#"<MgmtTree xmlns="syncml:dmddf1.2">
  <VerDTD>1.2</VerDTD>
  <Node><NodeName>DemoServer</NodeName><Path>./DMAcc</Path>
    <RTProperties><Type><DDFName>urn:oma:mo:oma-dm-dmacc:1.0</DDFName></Type></RTProperties>
    <Node><NodeName>ServerID</NodeName><Value>dm.example.com</Value></Node>
    <Node><NodeName>AppAddr</NodeName><Value>https://dm.example.com/dm</Value></Node>
    <Node><NodeName>AAuthPref</NodeName><Value>HMAC</Value></Node>
  </Node>
</MgmtTree>
"#;
const BOOTSTRAP_KEY_ID: u8 = 1;
/// The bootstrap packet the network sends: a TNDS document.
const BOOTSTRAP_PACKET: &[u8] = b"<MgmtTree xmlns=\"syncml:dmddf1.2\">\n  <VerDTD>1.2</VerDTD>\n  \
<Node><NodeName>DMAcc</NodeName>\n    <Node><NodeName>NetServer</NodeName>\n      \
<Node><NodeName>ServerID</NodeName><Value>net.example.com</Value></Node>\n    </Node>\n  \
</Node>\n</MgmtTree>\n";
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
                // A note shows what happened; it checks nothing and is not counted.
                (None, _) => println!("   note: {action}: {result}"),
                (Some(e), false) => println!("   [{mark}] {action}: {result} (expected: {e})"),
                _ => println!("   [{mark}] {action}: {result}"),
            }
        }
        // Every check is made inside a step (`begin` comes first).
        let Some(step) = self.steps.last_mut() else {
            return;
        };
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
    fn expect_ok<T, E: Display>(
        &mut self,
        action: &str,
        r: Result<T, E>,
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

    /// The checks made (notes are not checks: they cannot fail).
    fn checks(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.results)
            .filter(|c| c.expected.is_some())
            .count()
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

    /// Signs the approval statement of `package` (ECDSA P-256, SHA-256, DER):
    /// the content of an approval file.
    fn approve(&self, package: &PackageId) -> ApprovalFile {
        firmware::sign_statement(&package.statement(self.name), &self.key)
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
    /// The device tree that accepted bootstrap content is written to.
    device_tree: tempfile::TempDir,
}

impl World {
    fn pin() -> Result<Pin> {
        Ok(Pin::new(PIN)?)
    }

    /// Opens an SCP03 session as the authority (C-MAC, C-DEC, R-MAC, R-ENC).
    fn as_authority(&mut self, r: &mut Report) -> Result<()> {
        let level = SecurityLevel::new(LEVEL_ALL)?;
        let info = open_authority(&mut self.card, &self.authority, level)?;
        r.note(
            "open an SCP03 session as the authority",
            format!(
                "{AUTHORITY}, key version 0x{:02X}, security level 33",
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
        "create a card (authority admin with the test keys, key version 0x30; PIN 123456)",
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
        device_tree: tempfile::Builder::new()
            .prefix("dmsc-demo-device-")
            .tempdir()
            .context("cannot create a temporary directory")?,
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
        matches!(
            result,
            Err(HostError::Card {
                status: Status::RemainingRetries(2),
                ..
            })
        ),
        "refused, 2 tries left (SW 63C2)",
    );
    let status = w.card.pin_tries()?;
    r.expect(
        "PIN tries left",
        pin_text(status),
        status == PinStatus::NotVerified { tries_left: 2 },
        "2 tries left",
    );
    let result = w.card.verify_pin(&World::pin()?);
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
    // As `dmsc mo put` does it (mo::put_mo): validated, checked against the
    // MOs already on the card and the free memory, then stored.
    let tree = MgmtTree::parse_any(MO_TNDS)?;
    let put = mo::put_mo(&mut w.card, &tree, None);
    r.expect(
        &format!("store the MO record {MO_URI}"),
        match &put {
            Ok(stored) => format!("stored {}", stored.join(", ")),
            Err(e) => format!("error: {e}"),
        },
        matches!(&put, Ok(stored) if stored == &[MO_URI.to_string()]),
        format!("{MO_TYPE}, {} bytes of TNDS", MO_TNDS.len()),
    );
    // The enterprise policy in its signed envelope (the enterprise key goes
    // on the card with it in the policy step).
    let envelope = dmsc_host::policy::signing::SignedPolicy::sign(
        policy::POLICY.as_bytes(),
        &random_signing_key()?,
    )
    .encode();
    let stored = envelope.len();
    let put = w
        .card
        .put_object(&ObjectRef::Policy, &ObjectValue::Policy(envelope), None);
    r.expect_ok(
        "store the signed enterprise policy",
        put,
        format!("{stored} bytes (signed envelope)"),
    );
    let put = bootstrap::provision_key(
        &mut w.card,
        BOOTSTRAP_KEY_ID,
        MacAlgorithm::HmacSha256,
        &w.bootstrap_key,
    );
    r.expect_ok(
        "store bootstrap key 1 (HMAC-SHA256; travels encrypted, never readable)",
        put,
        "stored",
    );
    for a in &w.approvers {
        let public = p256::PublicKey::from(a.key.verifying_key());
        let put = firmware::register_approver(&mut w.card, a.name, &public, None);
        r.expect_ok(
            &format!("register approver {} (P-256 public key)", a.name),
            put,
            "stored",
        );
    }
    let required: Vec<String> = APPROVERS.iter().map(|s| s.to_string()).collect();
    let put = firmware::set_rule(&mut w.card, &required, true);
    r.expect_ok(
        "store the approval rule",
        put,
        format!("both {} and {} must approve", APPROVERS[0], APPROVERS[1]),
    );
    Ok(())
}

/// 4. Device side: refresh as `dmsc refresh` does it
///    ([`provisioning::refresh`](dmsc_host::provisioning::refresh)): one
///    SELECT says whether anything changed, then the MOs go to a device tree;
///    then the MO list and the MO itself as the device reads them.
fn refresh(r: &mut Report, w: &mut World) -> Result<()> {
    use dmsc_host::device_tree::DirectoryTree;
    use dmsc_host::provisioning;

    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut device = DirectoryTree::open(dir.path())?;
    let report = provisioning::refresh(&mut w.card, &mut device)?;
    r.expect(
        "refresh: the generation at SELECT",
        format!("{} (was {})", report.generation, w.first_generation),
        report.generation > w.first_generation && !report.unchanged,
        "higher than at power-up: refresh needed",
    );
    r.expect(
        "refresh: the MOs written to the device tree",
        list_text(&report.added),
        report.added.contains(&MO_URI.to_string()),
        MO_URI,
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
    let stored = MgmtTree::parse_any(MO_TNDS)?;
    let ok = matches!(&data.value, ObjectValue::Mo(m)
        if m.content == mo::record_for(&stored).content && m.version == 1 && m.mo_type == MO_TYPE);
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
///    shares with the card and sends the MAC in the Content-Type; the card
///    verifies it (the key never leaves the card); the user consents; the TNDS
///    content goes into the device tree.
fn bootstrap(r: &mut Report, w: &mut World) -> Result<()> {
    let mac = bootstrap::compute_mac(MacAlgorithm::HmacSha256, &w.bootstrap_key, BOOTSTRAP_PACKET)?;
    let header = content_type(MediaType::Xml, SecMethod::NetworkId, &mac);
    r.note("the network sends the packet with Content-Type", &header);
    let parsed = parse_content_type(&header)?;
    let device = w.device_tree.path().to_path_buf();
    let mut tampered = BOOTSTRAP_PACKET.to_vec();
    tampered[60] ^= 0x01;
    let outcome = bootstrap::verify_and_apply(
        &mut w.card,
        BOOTSTRAP_KEY_ID,
        parsed.media_type,
        &tampered,
        &parsed.mac,
        &device,
        &mut |_| true,
    )?;
    r.expect(
        "a tampered packet with the same MAC",
        format!("{outcome:?}"),
        outcome == BootstrapOutcome::MacInvalid && !in_device_tree(&device, "./DMAcc"),
        "MacInvalid, nothing written",
    );
    let mut asked = String::new();
    let outcome = bootstrap::verify_and_apply(
        &mut w.card,
        BOOTSTRAP_KEY_ID,
        parsed.media_type,
        BOOTSTRAP_PACKET,
        &parsed.mac,
        &device,
        &mut |content| {
            asked = content.nodes.join(", ");
            true // the demo's user consents
        },
    )?;
    let ok = matches!(&outcome, BootstrapOutcome::Applied(_)) && in_device_tree(&device, "./DMAcc");
    r.expect(
        &format!("the card verifies the MAC; the user accepts ({asked})"),
        format!("{outcome:?}"),
        ok,
        "./DMAcc applied to the device tree",
    );
    Ok(())
}

/// Whether the device tree in `dir` holds the MO rooted at `uri`.
fn in_device_tree(dir: &Path, uri: &str) -> bool {
    use dmsc_host::device_tree::{DeviceTree, DirectoryTree};
    DirectoryTree::open(dir)
        .and_then(|t| t.read_mo(uri))
        .is_ok_and(|mo| mo.is_some())
}

/// A package of `version` for the demo's device class: streamed through
/// SHA-256 as the device does it.
fn package(version: &str) -> Result<PackageId> {
    let image: Vec<u8> = format!("dmsc demo firmware {version}\n")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(1024 * 1024)
        .collect();
    let hashed = firmware::hash_package(&image[..], "the demo package", None, &mut |_| {})?;
    Ok(PackageId {
        digest: hashed.digest,
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
    let verdict = firmware::check_with_card(&mut w.card, &new, &[maintainer.approve(&new)])?;
    let missing_owner = RefusalReason::MissingApprover(owner.name.into());
    r.expect(
        "CHECK APPROVAL with the maintainer's approval only",
        verdict_text(&verdict.approved, &verdict.reasons),
        !verdict.approved && verdict.reasons == [missing_owner.clone()],
        format!("refused: {missing_owner}"),
    );
    // The device's decision, as `dmsc firmware approve` takes it: a refusal
    // by the card is final under a policy that never asks the user.
    let never_ask = firmware::ConsentPolicy {
        on_unapproved: firmware::OnUnapproved::Reject,
        allow_below_floor: false,
    };
    let decision = firmware::decide(&verdict, None, &never_ask);
    r.expect(
        "the device's decision on it (consent policy: reject)",
        decision.answered(false).word(),
        matches!(
            decision,
            firmware::Decision::Refused {
                cause: firmware::Final::PolicyRejects,
                ..
            }
        ),
        "refused",
    );
    let both = [maintainer.approve(&new), owner.approve(&new)];
    let verdict = firmware::check_with_card(&mut w.card, &new, &both)?;
    r.expect(
        "CHECK APPROVAL with both approvals",
        verdict_text(&verdict.approved, &verdict.reasons),
        verdict.approved,
        "approved",
    );
    let decision = firmware::decide(&verdict, None, &never_ask);
    r.expect(
        "the device's decision: install",
        decision.answered(false).word(),
        decision.answered(false).install(),
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
    let verdict = firmware::check_with_card(
        &mut w.card,
        &old,
        &[maintainer.approve(&old), owner.approve(&old)],
    )?;
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
    let update = ObjectValue::Mo(mo::record_for(&MgmtTree::parse_any(
        &MO_TNDS.replace("dm.example.com", "dm2.example.com"),
    )?));
    w.as_device()?;
    let result = w.card.put_object(&mo, &update, None);
    r.expect(
        "the device replaces the MO without authority",
        outcome(&result),
        matches!(
            result,
            Err(HostError::Card {
                status: Status::SecurityStatusNotSatisfied,
                ..
            })
        ),
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
    w.card.verify_pin(&World::pin()?).context("VERIFY")?;
    let result = w.card.put_object(&mo, &update, None);
    r.expect_ok("the user (PIN verified) replaces the MO", result, "stored");
    let data = w.card.read_object(&mo)?;
    r.expect(
        "MO version",
        mo_version(&data.value),
        matches!(&data.value, ObjectValue::Mo(m) if m.version == 2),
        2,
    );

    // A policy the user signed with a key of their own.
    let policy = ObjectValue::Policy(
        dmsc_host::policy::signing::SignedPolicy::sign(
            policy::POLICY
                .replace("\"disable\"", "\"enable\"")
                .as_bytes(),
            &random_signing_key()?,
        )
        .encode(),
    );
    for attempt in 1..=4 {
        let result = w.card.put_object(&ObjectRef::Policy, &policy, None);
        r.expect(
            &format!("the user tries to replace the policy ({attempt} of 4)"),
            outcome(&result),
            matches!(
                result,
                Err(HostError::Card {
                    status: Status::SecurityStatusNotSatisfied,
                    ..
                })
            ),
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
    let steps: [(&str, StepFn); 12] = [
        ("User PIN: tries left, a wrong PIN, the right PIN", user_pin),
        (
            "Authority (SCP03, level 33) stores an MO, the policy, a bootstrap key, \
             two approvers and the approval rule",
            provision,
        ),
        ("Device refresh: generation, MO list, the MO", refresh),
        (
            "Immediate provisioning and MO copy: a TNDS MO on the card, device refresh \
             into a device tree, a device subtree copied to the card, diff",
            mo_provisioning,
        ),
        (
            "Over the air: a script built for this card, relayed by the device; \
             altered and replayed copies refused; refresh picks up the change",
            over_the_air,
        ),
        (
            "HTTP bootstrap: the card verifies the packet's MAC",
            bootstrap,
        ),
        (uicc::TITLE, uicc::step),
        (
            "Firmware approval: two approvers, anti-rollback floor",
            firmware,
        ),
        (policy::TITLE, policy::step),
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

// ---- provisioning, MO copy and OTA (docs/provisioning.md) ------------------------

/// The MO the provisioning steps store: a DMAcc in TNDS.
const PROVISIONED_TNDS: &str = r#"<MgmtTree xmlns="syncml:dmddf1.2">
  <VerDTD>1.2</VerDTD>
  <Node><NodeName>DemoAcc</NodeName><Path>.</Path>
    <RTProperties><ACL>Get=*&amp;Replace=admin</ACL><Format><node/></Format>
      <Type><DDFName>urn:oma:mo:oma-dm-dmacc:1.0</DDFName></Type></RTProperties>
    <Node><NodeName>ServerID</NodeName><Value>dm.example.com</Value></Node>
    <Node><NodeName>AppAddr</NodeName>
      <Node><NodeName>1</NodeName><Node><NodeName>Addr</NodeName><Value>https://dm.example.com/dm</Value></Node></Node>
    </Node>
  </Node>
</MgmtTree>
"#;

/// The device's own MO, part of which is copied to the card.
const DEVICE_TNDS: &str = r#"<MgmtTree xmlns="syncml:dmddf1.2">
  <VerDTD>1.2</VerDTD>
  <Node><NodeName>DevDetail</NodeName><Path>.</Path>
    <Node><NodeName>FwV</NodeName><Value>2.1</Value></Node>
    <Node><NodeName>Ext</NodeName>
      <Node><NodeName>Wlan</NodeName><Value>corp-ssid</Value></Node>
    </Node>
  </Node>
</MgmtTree>
"#;

fn list_text(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// 9. Immediate provisioning and MO copy.
fn mo_provisioning(r: &mut Report, w: &mut World) -> Result<()> {
    use dmsc_host::device_tree::{DeviceTree, DirectoryTree, Origin, TreeChange};
    use dmsc_host::mo::{self, MgmtTree};
    use dmsc_host::provisioning::{self, DeviceCopy, MoComparison};

    let tree = MgmtTree::from_tnds(PROVISIONED_TNDS)?;
    w.as_authority(r)?;
    let stored = mo::put_mo(&mut w.card, &tree, None);
    let ok = matches!(&stored, Ok(u) if u == &["./DemoAcc"]);
    r.expect(
        "store a TNDS MO (compact binary form on the card)",
        format!("{stored:?}"),
        ok,
        "./DemoAcc stored",
    );
    w.as_device()?;
    let back = mo::get_mo(&mut w.card, "./DemoAcc")?;
    r.expect(
        "read it back as TNDS",
        format!(
            "{} bytes of TNDS, version {}",
            back.tree.to_tnds().len(),
            back.version
        ),
        back.tree == tree,
        "the same tree",
    );
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut device = DirectoryTree::open(dir.path())?;
    let report = provisioning::refresh(&mut w.card, &mut device)?;
    r.expect(
        "refresh the device tree from the card",
        format!("added {}", list_text(&report.added)),
        report.added.contains(&"./DemoAcc".to_string()),
        "./DemoAcc added",
    );
    let again = provisioning::refresh(&mut w.card, &mut device)?;
    r.expect(
        "refresh again",
        if again.unchanged {
            "unchanged (one SELECT)"
        } else {
            "changed"
        },
        again.unchanged,
        "unchanged (one SELECT)",
    );
    device.apply(&TreeChange {
        put: vec![(
            "./DevDetail".into(),
            MgmtTree::from_tnds(DEVICE_TNDS)?,
            Origin::Device,
        )],
        ..TreeChange::default()
    })?;
    w.as_authority(r)?;
    let copied = provisioning::copy_to_card(
        &mut w.card,
        &mut device,
        "./DevDetail",
        Some("Ext"),
        None,
        DeviceCopy::Keep,
    );
    let ok = matches!(&copied, Ok(u) if u == "./DevDetail/Ext");
    r.expect(
        "copy the device subtree ./DevDetail/Ext to the card (device copy kept)",
        format!("{copied:?}"),
        ok,
        "./DevDetail/Ext on the card",
    );
    w.as_device()?;
    let diff = provisioning::diff(&mut w.card, &device)?;
    let shown: Vec<String> = diff.iter().map(|(u, c)| format!("{u}: {c:?}")).collect();
    let ok = diff.get("./DemoAcc") == Some(&MoComparison::Same)
        && diff.get("./DevDetail") == Some(&MoComparison::DeviceOnly)
        && diff.get("./DevDetail/Ext") == Some(&MoComparison::Same);
    r.expect(
        "diff device tree and card",
        shown.join("; "),
        ok,
        "DemoAcc same, DevDetail device only, DevDetail/Ext same (held inside ./DevDetail)",
    );
    Ok(())
}

/// 10. Over the air.
fn over_the_air(r: &mut Report, w: &mut World) -> Result<()> {
    use dmsc_host::device_tree::DirectoryTree;
    use dmsc_host::mo::{self, MgmtTree};
    use dmsc_host::ota::{self, OtaOperation};
    use dmsc_host::provisioning;

    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut device = DirectoryTree::open(dir.path())?;
    w.as_device()?;
    provisioning::refresh(&mut w.card, &mut device)?;
    let before = mo::list_mos(&mut w.card)?;
    let request = ota::read_request(&mut w.card, w.authority.key_version)?;
    r.note(
        "device: card ID and SCP03 sequence counter for the authority",
        format!(
            "card {}, counter {}",
            request.card_id, request.sequence_counter
        ),
    );
    let mut update = MgmtTree::from_tnds(PROVISIONED_TNDS)?;
    update = mo::rooted_at(&update, "./OtaAcc")?;
    let level = SecurityLevel::new(0x03)?;
    let mut script = ota::build_script(
        &w.authority.keys,
        &request,
        level,
        &[OtaOperation::PutMo(update, None)],
    )?;
    r.note(
        "authority: script built offline (C-MAC + C-DECRYPTION)",
        format!(
            "{} APDUs for counter {}",
            script.apdus.len(),
            script.sequence_counter
        ),
    );
    // One flipped bit at each of four places: the host challenge
    // (INITIALIZE UPDATE), the host cryptogram (EXTERNAL AUTHENTICATE), the
    // encrypted data and the C-MAC of the first protected command. Each copy
    // must be refused by the card at that APDU, with the card unchanged.
    let mut outcomes = Vec::new();
    let mut all_refused = true;
    for (apdu, pos) in [(0usize, 6usize), (1, 6), (2, 12), (2, usize::MAX)] {
        let mut altered = script.clone();
        let mut bytes = hex::decode(&altered.apdus[apdu])?;
        let i = if pos == usize::MAX {
            bytes.len() - 1
        } else {
            pos
        };
        bytes[i] ^= 0x01;
        altered.apdus[apdu] = hex::encode_upper(bytes);
        let refused = ota::apply_script(&mut w.card, &altered);
        let unchanged = mo::list_mos(&mut w.card)? == before;
        let ok = matches!(&refused, Err(ota::OtaError::Refused { index, .. }) if *index == (apdu + 1).max(2))
            && unchanged;
        all_refused &= ok;
        outcomes.push(match refused {
            Ok(_) => format!("APDU {} byte {i}: accepted", apdu + 1),
            Err(ota::OtaError::Refused { index, sw, .. }) => {
                format!(
                    "APDU {} byte {i}: refused at APDU {index} ({sw:04X})",
                    apdu + 1
                )
            }
            Err(e) => format!("APDU {} byte {i}: {e}", apdu + 1),
        });
        // Each refusal used up the counter: the script must be rebuilt.
        let request = ota::read_request(&mut w.card, w.authority.key_version)?;
        let update = mo::rooted_at(&MgmtTree::from_tnds(PROVISIONED_TNDS)?, "./OtaAcc")?;
        script = ota::build_script(
            &w.authority.keys,
            &request,
            level,
            &[OtaOperation::PutMo(update, None)],
        )?;
    }
    r.expect(
        "device relays copies with one bit flipped at four places",
        outcomes.join("; "),
        all_refused,
        "each refused at the altered APDU, card unchanged",
    );
    let applied = ota::apply_script(&mut w.card, &script);
    r.expect(
        "device relays the script",
        applied
            .as_ref()
            .map(|o| o.operations.join(", "))
            .unwrap_or_else(|e| e.to_string()),
        applied.is_ok(),
        "put mo:./OtaAcc accepted",
    );
    let replay = ota::apply_script(&mut w.card, &script);
    r.expect(
        "device relays the same script again",
        replay
            .as_ref()
            .map(|_| "accepted".to_string())
            .unwrap_or_else(|e| e.to_string()),
        matches!(replay, Err(ota::OtaError::Refused { index: 2, .. })),
        "refused at EXTERNAL AUTHENTICATE (the sequence counter moved on)",
    );
    let report = provisioning::refresh(&mut w.card, &mut device)?;
    r.expect(
        "refresh",
        format!("added {}", list_text(&report.added)),
        report.added == ["./OtaAcc"],
        "./OtaAcc added",
    );
    Ok(())
}
