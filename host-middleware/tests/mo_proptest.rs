//! Property tests of the MO forms: every valid tree survives TNDS XML, JSON and
//! the binary form unchanged, and no input makes a decoder panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dmsc_host::mo::{MgmtTree, Node, NodeType, RtProperties};
use proptest::prelude::*;

/// Text with what XML must escape, spaces, and non-ASCII letters.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ a-zA-Z0-9<>&\"'é€.:/_-]{0,12}").unwrap()
}

fn token() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9._:-]{1,10}").unwrap()
}

fn properties() -> impl Strategy<Value = Option<RtProperties>> {
    proptest::option::of(
        (
            proptest::option::of(prop_oneof![
                Just("Get=*".to_string()),
                Just("Get=*&Replace=ServerA+ServerB".to_string()),
                Just("Add=user&Exec=*".to_string()),
            ]),
            proptest::option::of(prop_oneof![
                Just("chr".to_string()),
                Just("int".to_string())
            ]),
            proptest::option::of(text()),
            proptest::option::of(token()),
            proptest::option::of(prop_oneof![
                token().prop_map(NodeType::Mime),
                token().prop_map(NodeType::DdfName)
            ]),
        )
            .prop_map(|(acl, format, title, ver_no, node_type)| RtProperties {
                acl,
                format,
                title,
                ver_no,
                node_type,
                ..RtProperties::default()
            }),
    )
}

fn leaf() -> impl Strategy<Value = Node> {
    (token(), properties(), proptest::option::of(text())).prop_map(|(name, properties, value)| {
        Node {
            name,
            path: None,
            properties,
            value,
            children: Vec::new(),
        }
    })
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        (token(), proptest::collection::vec(inner, 1..4)).prop_map(|(name, children)| {
            let mut seen = std::collections::BTreeSet::new();
            let children = children
                .into_iter()
                .filter(|c| seen.insert(c.name.clone()))
                .collect();
            Node {
                name,
                path: None,
                properties: None,
                value: None,
                children,
            }
        })
    })
}

fn tree() -> impl Strategy<Value = MgmtTree> {
    (node(), proptest::option::of(text())).prop_map(|(mut root, man)| {
        root.path = Some(".".into());
        MgmtTree {
            ver_dtd: "1.2".into(),
            man,
            model: None,
            nodes: vec![root],
        }
    })
}

proptest! {
    #[test]
    fn every_form_round_trips(t in tree()) {
        prop_assume!(t.validate().is_ok());
        prop_assert_eq!(MgmtTree::from_tnds(&t.to_tnds()).unwrap(), t.clone());
        prop_assert_eq!(MgmtTree::from_json(&t.to_json()).unwrap(), t.clone());
        prop_assert_eq!(MgmtTree::from_binary(&t.to_binary()).unwrap(), t);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = MgmtTree::from_binary(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = MgmtTree::from_tnds(s);
            let _ = MgmtTree::from_json(s);
        }
    }

    #[test]
    fn mutated_binary_forms_never_panic(t in tree(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bin = t.to_binary();
        let i = at % bin.len();
        bin[i] = byte;
        if let Ok(decoded) = MgmtTree::from_binary(&bin) {
            prop_assert_eq!(MgmtTree::from_tnds(&decoded.to_tnds()).unwrap(), decoded);
        }
    }
}
