//! MO documents and the card's MO content: `MgmtTree::from_tnds`,
//! `from_json` and `from_binary` never panic, and whatever parses survives a
//! round trip through every form unchanged.
#![no_main]

use dmsc_host::mo::MgmtTree;
use libfuzzer_sys::fuzz_target;

fn round_trips(tree: &MgmtTree) {
    let xml = MgmtTree::from_tnds(&tree.to_tnds()).expect("own TNDS parses");
    assert_eq!(&xml, tree, "TNDS round trip");
    let json = MgmtTree::from_json(&tree.to_json()).expect("own JSON parses");
    assert_eq!(&json, tree, "JSON round trip");
    let bin = MgmtTree::from_binary(&tree.to_binary()).expect("own binary form parses");
    assert_eq!(&bin, tree, "binary round trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = MgmtTree::from_binary(data) {
        round_trips(&tree);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tree) = MgmtTree::from_tnds(text) {
            round_trips(&tree);
        }
        if let Ok(tree) = MgmtTree::from_json(text) {
            round_trips(&tree);
        }
    }
});
