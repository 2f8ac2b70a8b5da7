//! Demo step: the portable enterprise policy (docs/policy.md).

use anyhow::{Context as _, Result};
use dmsc_host::card_model::commands::ObjectValue;
use dmsc_host::card_model::objects::ObjectRef;
use dmsc_host::policy::card::{put_policy, read_verified};
use dmsc_host::policy::device::{accept_command, enforce};
use dmsc_host::policy::signing::{policy_digest, CommandStatement, SignedCommand, SignedPolicy};
use dmsc_host::policy::{evaluate, next_change, Context, PolicyError, Position, State};
use dmsc_host::CardCommands;
use jiff::Timestamp;

use super::{random_signing_key, Report, World};

/// The step's title.
pub const TITLE: &str = "Enterprise policy: signed on the card, enforced by the device, \
                         an administrator's signed command";

/// The demo's policy: camera and USB off during working hours, radios off in the lab.
pub const POLICY: &str = r#"format = "dmsc-policy"
version = 1
name = "ACME demo policy"
timezone = "Europe/Paris"

[sites.lab]
polygon = [[48.70, 2.17], [48.70, 2.19], [48.72, 2.19], [48.72, 2.17]]

[[rules]]
id = "work-hours"
effect = "disable"
resources = ["camera", "usb"]
days = ["mon-fri"]
from = "08:00"
to = "18:00"

[[rules]]
id = "lab-radio"
effect = "disable"
resources = ["bluetooth", "wifi"]
inside = ["lab"]
"#;

fn states(decisions: &[dmsc_host::policy::Decision]) -> String {
    decisions
        .iter()
        .map(|d| format!("{} {}", d.resource, d.state))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the step.
pub fn step(r: &mut Report, w: &mut World) -> Result<()> {
    let enterprise = random_signing_key()?;
    // Monday 23 November 2026, 09:00 in Paris.
    let monday: Timestamp = "2026-11-23T08:00:00Z".parse()?;

    w.as_authority(r)?;
    match put_policy(&mut w.card, POLICY.as_bytes(), &enterprise, false) {
        Ok(out) => r.expect(
            "sign the policy with the enterprise key and store it with the key (approver:enterprise)",
            format!("{} ({} bytes)", out.digest, out.stored_bytes),
            out.key_written,
            "policy and key stored",
        ),
        Err(e) => r.expect("store the signed policy", e, false, "stored"),
    }

    w.as_device()?;
    let action = "the device reads the policy; the card verifies its signature with its key";
    let verified = match read_verified(&mut w.card) {
        Ok(v) => {
            let says = format!(
                "{} verified, key {}",
                v.policy.name,
                &v.key_fingerprint[..16]
            );
            r.expect(action, says, true, "verified");
            v
        }
        Err(e) => {
            // The rest of the step needs the verified policy.
            r.expect(action, e, false, "verified");
            return Ok(());
        }
    };
    let mut ctx = Context::at(monday);
    ctx.location = Position::new(48.70, 2.18); // on the lab's southern edge
    let d = evaluate(&verified.policy, &ctx);
    r.expect(
        "evaluate Monday 09:00 Paris, on the lab's edge",
        states(&d),
        d.iter().all(|d| d.state == State::Disabled),
        "everything disabled",
    );
    let n = next_change(&verified.policy, &ctx);
    r.expect(
        "next change",
        n.map(|t| t.to_string()).unwrap_or_else(|| "none".into()),
        n == Some("2026-11-23T17:00:00Z".parse()?),
        "2026-11-23T17:00:00Z (18:00 Paris)",
    );

    let device = tempfile::tempdir().context("a device folder")?;
    let report = enforce(&mut w.card, device.path(), &Context::at(monday))?;
    r.expect(
        "enforce into the device folder (policy/resources.json, policy/report.json)",
        format!(
            "{}: {}",
            report.status,
            states(
                &report
                    .applied
                    .iter()
                    .map(|a| a.decision.clone())
                    .collect::<Vec<_>>()
            )
        ),
        report.status == "applied",
        "applied",
    );

    let statement = CommandStatement {
        action: State::Enabled,
        resource: "camera".into(),
        until: Some("2026-11-23T09:00:00Z".parse()?),
        counter: 1,
        not_after: monday.checked_add(jiff::SignedDuration::from_hours(1))?,
        policy: policy_digest(POLICY.as_bytes()),
    };
    let cmd = SignedCommand::sign(&statement, &enterprise);
    let accepted = accept_command(&mut w.card, device.path(), &cmd, monday);
    r.expect(
        "an administrator's signed command: camera on until 10:00 Paris",
        match &accepted {
            Ok((o, _)) => format!("accepted #{} ({} {})", o.counter, o.resource, o.state),
            Err(e) => e.to_string(),
        },
        accepted.is_ok(),
        "accepted",
    );
    let report = enforce(&mut w.card, device.path(), &Context::at(monday))?;
    let camera = report
        .applied
        .iter()
        .find(|a| a.decision.resource == "camera");
    r.expect(
        "enforce again",
        camera
            .map(|a| format!("camera {} by {}", a.decision.state, a.decision.decided_by))
            .unwrap_or_default(),
        camera.is_some_and(|a| a.decision.state == State::Enabled),
        "camera enabled by the command",
    );
    let replay = accept_command(&mut w.card, device.path(), &cmd, monday);
    r.expect(
        "the same command again",
        match &replay {
            Ok(_) => "accepted".to_string(),
            Err(e) => e.to_string(),
        },
        matches!(replay, Err(PolicyError::CommandRefused(_))),
        "refused (replay)",
    );

    // Someone who can write the card swaps the policy but keeps the signature.
    w.as_authority(r)?;
    let signed = SignedPolicy::sign(POLICY.as_bytes(), &enterprise);
    let forged = SignedPolicy {
        text: POLICY.replace("\"disable\"", "\"enable\"").into_bytes(),
        signature: signed.signature,
    };
    w.card
        .put_object(
            &ObjectRef::Policy,
            &ObjectValue::Policy(forged.encode()),
            None,
        )
        .context("writing the forged policy")?;
    w.as_device()?;
    let refused = enforce(&mut w.card, device.path(), &Context::at(monday));
    r.expect(
        "a policy changed after signing",
        match &refused {
            Ok(_) => "applied".to_string(),
            Err(e) => format!("refused: {e}"),
        },
        matches!(refused, Err(PolicyError::BadSignature(_))),
        "refused, nothing applied",
    );
    Ok(())
}
