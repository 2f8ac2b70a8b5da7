//! BER-TLV and everything decoded from it: `parse_all`, `Fields`,
//! `ObjectRef::decode`, every `ObjectValue::decode`, and the response types.
#![no_main]

use dmsc_card_model::commands::{self, ObjectValue};
use dmsc_card_model::objects::{ObjectKind, ObjectRef};
use dmsc_card_model::tlv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = tlv::parse_all(data) {
        // What parses re-encodes to the same bytes (the decoder is strict).
        let mut again = Vec::new();
        for t in &items {
            tlv::write(&mut again, t.tag, t.value);
            let _ = t.children();
        }
        assert_eq!(again, data, "parse_all accepted a non-canonical encoding");
    }
    let _ = tlv::parse_one(data);
    if let Ok(f) = tlv::Fields::parse(data) {
        let _ = f.only(&[0x53, 0x8C], &[0x53]);
        let _ = f.require(0x53);
        let _ = f.all(0xE1).count();
    }
    if let Ok(r) = ObjectRef::decode(data) {
        assert_eq!(ObjectRef::decode(&r.encode()).as_ref(), Ok(&r));
        let _ = r.to_string().parse::<ObjectRef>();
    }
    for kind in ObjectKind::ALL {
        if let Ok(v) = ObjectValue::decode(kind, data) {
            assert_eq!(v.kind(), kind);
            let _ = ObjectValue::decode(kind, &v.encode());
        }
        let _ = commands::ObjectData::decode(kind, data);
    }
    let _ = commands::SelectInfo::decode(data);
    let _ = commands::ApprovalVerdict::decode(data);
    let _ = commands::decode_list(data);
    let _ = commands::AuditEntry::decode(data);
});
