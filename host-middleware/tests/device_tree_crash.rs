//! Crash safety and cost of a device-tree change, on the simulated disk
//! (`device_tree::SimulatedFiles`): power is cut after every single file
//! operation of a change, and the medium is looked at under three models of
//! what survives (only what was synced; directory changes but no unsynced
//! data; everything). Each time, the tree opened again must be the old one or
//! the new one, never a mix, a change that returned must be durable, and the
//! next change must succeed. A self-test puts back a change that renames
//! before it syncs and checks that this campaign catches it.
//! docs/device-tree.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use dmsc_host::device_tree::{
    CardMark, CrashModel, DeviceTree, DirectoryTree, IoStats, LastCard, Origin, Regression,
    SimulatedFiles, TreeChange, TreeIndex,
};
use dmsc_host::files::FileLayer;
use dmsc_host::mo::MgmtTree;

const ROOT: &str = "/device";

fn mo(name: &str, value: &str) -> MgmtTree {
    MgmtTree::from_tnds(&format!(
        "<MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD>\
         <Node><NodeName>{name}</NodeName><Path>.</Path>\
         <Node><NodeName>Value</NodeName><Value>{value}</Value></Node></Node></MgmtTree>"
    ))
    .unwrap()
}

fn card(id: &str) -> Origin {
    Origin::Card {
        card_id: id.into(),
        generation: 1,
        version: 1,
    }
}

/// A refresh from card `id`: MOs `M{from}..M{to}` with values naming the card.
fn refresh(id: &str, from: usize, to: usize, remove: &[&str]) -> TreeChange {
    TreeChange {
        put: (from..to)
            .map(|i| (format!("./M{i}"), mo(&format!("M{i}"), id), card(id)))
            .collect(),
        remove: remove.iter().map(|s| s.to_string()).collect(),
        last_card: LastCard::Set(CardMark {
            card_id: id.into(),
            generation: 1,
        }),
    }
}

/// What a reader finds in the tree: the index, every MO, the MO files.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    index: TreeIndex,
    mos: BTreeMap<String, MgmtTree>,
}

/// Opens the tree on `disk` (as the next run does: leftovers collected) and
/// reads all of it, or says what is wrong.
fn look(disk: Arc<dyn FileLayer>) -> Result<(DirectoryTree, Seen), String> {
    let tree = DirectoryTree::open_with(Path::new(ROOT), disk.clone())
        .map_err(|e| format!("does not open: {e}"))?;
    let index = tree.index().map_err(|e| format!("index: {e}"))?;
    let mut mos = BTreeMap::new();
    for uri in index.mos.keys() {
        match tree.read_mo(uri) {
            Ok(Some(t)) => {
                mos.insert(uri.clone(), t);
            }
            Ok(None) => return Err(format!("{uri} is in the index but not readable")),
            Err(e) => return Err(format!("{uri}: {e}")),
        }
    }
    if let Some(dir) = tree.current_dir().map_err(|e| e.to_string())? {
        let mut on_disk: Vec<String> = disk
            .list(&dir.join("mo"))
            .map_err(|e| format!("mo/: {e}"))?
            .into_iter()
            .map(|(n, _)| format!("mo/{}", n.to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut named: Vec<String> = index.mos.values().map(|e| e.file.clone()).collect();
        named.sort();
        if on_disk != named {
            return Err(format!("mo/ holds {on_disk:?}, the index names {named:?}"));
        }
    }
    let gens = disk
        .list(&Path::new(ROOT).join("trees"))
        .map_err(|e| format!("trees/: {e}"))?
        .len();
    if gens > 1 {
        return Err(format!("{gens} generations left in trees/"));
    }
    if disk
        .kind(&Path::new(ROOT).join("current.new"))
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("current.new left".into());
    }
    Ok((tree, Seen { index, mos }))
}

/// A disk holding a tree made by `setup` (all synced), with extra files of
/// another use case in its generation (carried over by every change).
fn prepared(setup: &[TreeChange]) -> Arc<SimulatedFiles> {
    let disk = Arc::new(SimulatedFiles::new());
    let mut tree = DirectoryTree::open_with(Path::new(ROOT), disk.clone()).unwrap();
    for change in setup {
        tree.apply(change).unwrap();
    }
    if let Some(dir) = tree.current_dir().unwrap() {
        disk.create_dir_all(&dir.join("other/sub")).unwrap();
        disk.write_file(&dir.join("other/sub/state.json"), b"{\"kept\":true}")
            .unwrap();
        disk.sync_fs(&dir).unwrap();
    }
    disk
}

/// Cuts the power after every operation of `change` (each model), and
/// returns every violation found: neither old nor new, a returned change not
/// durable, or no recovery.
fn crash_campaign(
    setup: &[TreeChange],
    change: &TreeChange,
    regression: Option<Regression>,
) -> Vec<String> {
    let base = prepared(setup);
    let (_, old) = look(Arc::new(base.fork())).unwrap();
    // A run without a crash: its length and the new tree.
    let probe = Arc::new(base.fork());
    let mut tree = DirectoryTree::open_with(Path::new(ROOT), probe.clone()).unwrap();
    let start = probe.ops();
    tree.apply(change).unwrap();
    let steps = probe.ops() - start;
    let (_, new) = look(probe).unwrap();
    assert_ne!(old, new, "the change changes something");

    let mut violations = Vec::new();
    for cut in 0..=steps {
        for model in CrashModel::ALL {
            let disk = Arc::new(base.fork());
            let mut tree = DirectoryTree::open_with(Path::new(ROOT), disk.clone()).unwrap();
            if let Some(r) = regression {
                tree.reintroduce(r);
            }
            disk.cut_after(Some(cut));
            let returned = tree.apply(change).is_ok();
            let after: Arc<dyn FileLayer> = Arc::new(disk.after_crash(model));
            let place = format!("cut after {cut}/{steps} operations, {model:?}");
            let (mut reopened, seen) = match look(after.clone()) {
                Ok(x) => x,
                Err(e) => {
                    violations.push(format!("{place}: {e}"));
                    continue;
                }
            };
            if seen != old && seen != new {
                violations.push(format!("{place}: neither the old tree nor the new one"));
            }
            if returned && seen != new {
                violations.push(format!("{place}: the change returned but was lost"));
            }
            // The next run recovers: the change goes through.
            match reopened.apply(change) {
                Ok(()) => match look(after) {
                    Ok((_, s)) if s.index.mos == new.index.mos && s.mos == new.mos => {}
                    Ok(_) => violations.push(format!("{place}: the rerun gave another tree")),
                    Err(e) => violations.push(format!("{place}: after the rerun: {e}")),
                },
                Err(e) => violations.push(format!("{place}: the rerun failed: {e}")),
            }
        }
    }
    violations
}

#[test]
fn a_power_cut_at_any_step_of_a_refresh_leaves_old_or_new() {
    let setup = [refresh("A", 0, 12, &[])];
    let change = refresh("B", 4, 16, &["./M0", "./M1", "./M2", "./M3"]);
    let violations = crash_campaign(&setup, &change, None);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn a_power_cut_at_any_step_of_a_bootstrap_or_first_change_leaves_old_or_new() {
    // A bootstrap: the device's own MOs added beside a card's.
    let boot = TreeChange {
        put: vec![
            ("./DMAcc".into(), mo("DMAcc", "boot"), Origin::Device),
            ("./Vendor/Acme".into(), mo("Acme", "boot"), Origin::Device),
        ],
        ..TreeChange::default()
    };
    let violations = crash_campaign(&[refresh("A", 0, 5, &[])], &boot, None);
    assert!(violations.is_empty(), "{violations:#?}");
    // The first change of a new tree (no `current` yet).
    let violations = crash_campaign(&[], &boot, None);
    assert!(violations.is_empty(), "{violations:#?}");
    // A change that only removes (a card forgotten).
    let forget = TreeChange {
        remove: (0..5).map(|i| format!("./M{i}")).collect(),
        last_card: LastCard::Clear,
        ..TreeChange::default()
    };
    let violations = crash_campaign(&[refresh("A", 0, 5, &[]), boot], &forget, None);
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Self-test of the campaign: a change that switches `current` (and syncs
/// the directory) before it syncs the new generation is caught.
#[test]
fn self_test_a_rename_before_the_sync_is_caught() {
    let setup = [refresh("A", 0, 12, &[])];
    let change = refresh("B", 4, 16, &["./M0"]);
    let violations = crash_campaign(&setup, &change, Some(Regression::RenameBeforeSync));
    for v in &violations {
        eprintln!("caught: {v}");
    }
    assert!(
        !violations.is_empty(),
        "the campaign did not catch a rename before the sync"
    );
    // What it sees: a visible generation that is not on the medium, or
    // whose files are empty.
    assert!(
        violations
            .iter()
            .any(|v| v.contains("LoseUnsynced") || v.contains("MetadataOnly")),
        "{violations:#?}"
    );
    assert!(
        !violations.iter().any(|v| v.contains("KeepAll")),
        "a crash of the process alone cannot show it: {violations:#?}"
    );
}

/// The other use case's files survive every change.
#[test]
fn other_files_of_a_generation_are_carried_over() {
    let disk = prepared(&[refresh("A", 0, 3, &[])]);
    let mut tree = DirectoryTree::open_with(Path::new(ROOT), disk.clone()).unwrap();
    tree.apply(&refresh("B", 0, 3, &[])).unwrap();
    let dir = tree.current_dir().unwrap().unwrap();
    assert_eq!(
        disk.read(&dir.join("other/sub/state.json")).unwrap(),
        b"{\"kept\":true}"
    );
}

fn change_cost(tree: &mut DirectoryTree, change: &TreeChange) -> IoStats {
    let before = tree.io_stats();
    tree.apply(change).unwrap();
    tree.io_stats() - before
}

#[test]
fn a_change_costs_two_syncs_whatever_the_number_of_mos() {
    for n in [1, 10, 100, 1000] {
        let disk = Arc::new(SimulatedFiles::new());
        let mut tree = DirectoryTree::open_with(Path::new(ROOT), disk).unwrap();
        // Creating the tree: the marker, one syncfs.
        assert_eq!(tree.io_stats().syncs, 1, "{n} MOs: opening");
        let first = refresh("A", 0, n, &[]);
        let cost = change_cost(&mut tree, &first);
        assert_eq!(
            (cost.syncs, cost.fs_syncs, cost.dir_syncs),
            (2, 1, 1),
            "{n}"
        );
        assert_eq!(cost.file_syncs, 0, "{n}");
        // Every MO and the index written once, nothing else.
        let tnds: u64 = first
            .put
            .iter()
            .map(|(_, t, _)| t.to_tnds().len() as u64)
            .sum();
        let index = serde_json::to_string_pretty(&tree.index().unwrap())
            .unwrap()
            .len() as u64;
        assert_eq!(cost.bytes_written, tnds + index, "{n}");
        assert_eq!(cost.files_written, n as u64 + 1, "{n}");
        // A full refresh from another card.
        let cost = change_cost(&mut tree, &refresh("B", 0, n, &[]));
        assert_eq!(cost.syncs, 2, "{n}");
        // One MO changed: the others are linked, not written again.
        let cost = change_cost(
            &mut tree,
            &TreeChange {
                put: vec![("./M0".into(), mo("M0", "copy"), Origin::Device)],
                ..TreeChange::default()
            },
        );
        assert_eq!(cost.syncs, 2, "{n}");
        assert_eq!(cost.files_written, 2, "{n}: the MO and the index");
        assert_eq!(cost.files_linked, n as u64 - 1, "{n}");
    }
}

#[test]
fn on_the_real_file_system_a_change_costs_two_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = DirectoryTree::open(dir.path()).unwrap();
    assert_eq!(tree.io_stats().syncs, 1);
    let cost = change_cost(&mut tree, &refresh("A", 0, 100, &[]));
    assert_eq!((cost.fs_syncs, cost.dir_syncs, cost.file_syncs), (1, 1, 0));
    let cost = change_cost(&mut tree, &refresh("B", 0, 100, &[]));
    assert_eq!(cost.syncs, 2);
    // Opened again: the marker is there, nothing is synced.
    let again = DirectoryTree::open(dir.path()).unwrap();
    assert_eq!(again.io_stats().syncs, 0);
    assert_eq!(again.index().unwrap().mos.len(), 100);
    assert_eq!(
        std::fs::read_dir(dir.path().join("current/mo"))
            .unwrap()
            .count(),
        100
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("trees")).unwrap().count(),
        1
    );
}

#[cfg(feature = "sim")]
mod support;

/// A policy enforcement replaces `policy/resources.json` and `report.json`
/// in three syncs: both files, then their directory once — also the first
/// one, which creates `policy/` (a syncfs then covers the folder's entry).
#[cfg(feature = "sim")]
#[test]
fn a_policy_enforcement_costs_three_syncs() {
    use dmsc_host::card_model::scp03::SecurityLevel;
    use dmsc_host::files::syncs_on_this_thread;
    use dmsc_host::policy::card::put_policy;
    use dmsc_host::policy::device::enforce;
    use dmsc_host::policy::Context;
    use dmsc_host::transport::sim::SimTransport;
    use dmsc_host::{open_secure_channel, Session};
    let mut c = Session::new(SimTransport::in_memory(support::card_params(false)).unwrap());
    open_secure_channel(
        &mut c,
        &support::server_a(),
        SecurityLevel::new(0x33).unwrap(),
    )
    .unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&[1; 32]).unwrap();
    put_policy(
        &mut c,
        dmsc_test_support::SAMPLE_POLICY.as_bytes(),
        &key,
        false,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(!dir.path().join("policy").exists());
    for at in ["2026-11-23T10:00:00Z", "2026-11-23T20:00:00Z"] {
        let before = syncs_on_this_thread();
        let report = enforce(&mut c, dir.path(), &Context::at(at.parse().unwrap())).unwrap();
        assert_eq!(report.status, "applied");
        assert_eq!(syncs_on_this_thread() - before, 3, "{at}");
        assert!(dir.path().join("policy/resources.json").exists());
    }
}
