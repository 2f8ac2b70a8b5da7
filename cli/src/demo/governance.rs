//! The demo's access-governance step: authority key sets by PUT KEY, an ACL
//! grant, the failure limit, the last authority kept, alarms as events.

use anyhow::Result;
use dmsc_host::card_model::objects::{ObjectRef, Principal, Right};
use dmsc_host::card_model::scp03::{SecurityLevel, StaticKeys};
use dmsc_host::{AuditWatcher, AuthorityKeySet, Governance, HostError, Status};

use super::{outcome, random_bytes, Report, World};
use crate::context::open_authority;
use crate::output::hex_upper;

fn random_keys() -> Result<StaticKeys> {
    let (enc, mac, dek) = (random_bytes(16)?, random_bytes(16)?, random_bytes(16)?);
    Ok(StaticKeys::new(&enc, &mac, &dek)?)
}

/// Access governance: add, use, rotate and remove an authority; grant a right;
/// the failure limit; the last authority stays; alarms as events.
pub(super) fn governance(r: &mut Report, w: &mut World) -> Result<()> {
    w.as_authority(r)?;
    let admin = w.authority.clone();
    let ops_keys = random_keys()?;
    let added = w.card.add_authority(&admin, "ops", 0x40, &ops_keys);
    let kcvs = added
        .as_ref()
        .map(|a| {
            a.kcvs
                .iter()
                .map(|k| hex_upper(k))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    r.expect_ok(
        "PUT KEY: admin adds authority ops (key version 0x40; keys encrypted with admin's DEK)",
        added,
        format!("key check values {kcvs}"),
    );
    let names: Vec<String> = w
        .card
        .authorities()?
        .iter()
        .map(|a| format!("0x{:02X} {}", a.key_version, a.name))
        .collect();
    r.expect(
        "the card's key sets",
        names.join(", "),
        names.len() == 2,
        "0x30 admin, 0x40 ops",
    );
    let level = SecurityLevel::new(0x33)?;
    let ops = AuthorityKeySet {
        key_version: 0x40,
        keys: ops_keys,
    };
    let opened = open_authority(&mut w.card, &ops, level).map(|_| ());
    r.expect(
        "ops authenticates with its new keys",
        if opened.is_ok() {
            "SCP03 session open"
        } else {
            "failed"
        },
        opened.is_ok(),
        "SCP03 session open",
    );
    let rotated_keys = random_keys()?;
    let rotated = w.card.rotate_authority(&ops, 0x40, 0x41, &rotated_keys);
    r.expect_ok(
        "ops rotates its own keys to key version 0x41",
        rotated,
        "rotated",
    );

    w.as_authority(r)?;
    let granted = w.card.grant(
        &ObjectRef::Policy,
        Right::Replace,
        &Principal::Authority("ops".into()),
    );
    let acl = granted
        .as_ref()
        .map(|(_, after)| after.to_string())
        .unwrap_or_default();
    r.expect_ok(
        "admin grants ops Replace on the policy",
        granted,
        format!("ACL {acl}"),
    );
    let low = w.card.set_failure_limit(3);
    r.expect(
        "failure limit 3",
        outcome(&low),
        matches!(
            low,
            Err(HostError::Card {
                status: Status::IncorrectDataParameter,
                ..
            })
        ),
        "refused (SW 6A80): never below 4",
    );
    let set = w.card.set_failure_limit(5);
    r.expect_ok("failure limit 5", set, "set");
    let removed = w.card.remove_authority(0x41);
    r.expect_ok("admin removes ops (key version 0x41)", removed, "removed");
    let last = w.card.remove_authority(admin.key_version);
    r.expect(
        "admin tries to remove its own key set, the card's last",
        outcome(&last),
        matches!(
            last,
            Err(HostError::Card {
                status: Status::ConditionsOfUseNotSatisfied,
                ..
            })
        ),
        "refused (SW 6985): the last authority stays",
    );
    let mut watcher = AuditWatcher::alarms(0);
    let mut events = Vec::new();
    watcher.poll(&mut w.card, |e| events.push(super::entry_summary(e)))?;
    r.expect(
        "alarms as events (AuditWatcher)",
        events.last().cloned().unwrap_or_else(|| "none".into()),
        !events.is_empty(),
        "the user's alarm of the access-control step",
    );
    Ok(())
}
