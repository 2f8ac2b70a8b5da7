//! OMA DM (SyncML DM 1.2) bootstrap messages through
//! `dmsc_host::bootstrap::decode_content`, as XML and as WBXML encoded by an
//! independent encoder: libwbxml's `xml2wbxml` (Debian `libwbxml2-utils`).
//! Run now when the tool is installed (required under `CI=true`), and always
//! against the fixed vector it produced (test-vectors/syncml/).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dmsc_host::bootstrap::syncml::SyncmlError;
use dmsc_host::bootstrap::{decode_content, write_bootstrap_content, BootstrapError, MediaType};
use dmsc_host::device_tree::{DeviceTree, DirectoryTree};
use dmsc_host::mo::MgmtTree;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/syncml")
}

fn sample_xml() -> Vec<u8> {
    std::fs::read(vectors().join("dm-bootstrap.xml")).unwrap()
}

/// The tree the sample message describes, written as TNDS by hand.
const EXPECTED_TNDS: &str = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>
<Node><NodeName>DMAcc</NodeName><RTProperties><Format><node/></Format></RTProperties>
 <Node><NodeName>w7</NodeName><RTProperties><Format><node/></Format></RTProperties>
  <Node><NodeName>AppID</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>w7</Value></Node>
  <Node><NodeName>ServerID</NodeName><RTProperties><Format><chr/></Format><Type><MIME>text/plain</MIME></Type></RTProperties><Value>dm.example.net</Value></Node>
  <Node><NodeName>AppAddr</NodeName><RTProperties><Format><node/></Format></RTProperties>
   <Node><NodeName>1</NodeName><RTProperties><Format><node/></Format></RTProperties>
    <Node><NodeName>Addr</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>https://dm.example.net/dm</Value></Node>
   </Node>
  </Node>
  <Node><NodeName>Name</NodeName><RTProperties><Format><chr/></Format></RTProperties><Value>Example &amp; Co DM</Value></Node>
 </Node>
</Node></MgmtTree>"#;

fn tree_of(media: MediaType, packet: &[u8]) -> MgmtTree {
    let content = decode_content(media, packet).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(content.nodes, ["./DMAcc"]);
    MgmtTree::from_tnds(&content.xml).unwrap()
}

#[test]
fn the_xml_message_decodes_to_the_tree_its_items_describe() {
    let tree = tree_of(MediaType::Xml, &sample_xml());
    assert_eq!(tree, MgmtTree::from_tnds(EXPECTED_TNDS).unwrap());
}

#[test]
fn the_fixed_xml2wbxml_vector_decodes_like_the_xml() {
    let wbxml = std::fs::read(vectors().join("dm-bootstrap.wbxml")).unwrap();
    assert_eq!(
        &wbxml[..3],
        [0x03, 0xA4, 0x01],
        "WBXML 1.3, SyncML 1.2 public id"
    );
    assert_eq!(
        tree_of(MediaType::Wbxml, &wbxml),
        tree_of(MediaType::Xml, &sample_xml())
    );
}

/// Encodes the sample with `xml2wbxml` now; `None` (and a loud note) when
/// the tool is not installed, a failure under `CI=true`.
fn xml2wbxml(xml: &Path, out: &Path) -> Option<Vec<u8>> {
    match Command::new("xml2wbxml")
        .arg("-o")
        .arg(out)
        .arg(xml)
        .output()
    {
        Ok(o) => {
            assert!(
                o.status.success(),
                "xml2wbxml failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(std::fs::read(out).unwrap())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "xml2wbxml is not installed (Debian libwbxml2-utils; .ci/install-deps)"
            );
            eprintln!(
                "SKIPPED: xml2wbxml is not installed (apt-get install libwbxml2-utils); \
                 the independent-encoder test did not run"
            );
            None
        }
        Err(e) => panic!("running xml2wbxml: {e}"),
    }
}

#[test]
fn a_message_encoded_by_xml2wbxml_now_decodes_like_the_xml_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.wbxml");
    let Some(wbxml) = xml2wbxml(&vectors().join("dm-bootstrap.xml"), &out) else {
        return;
    };
    let tree = tree_of(MediaType::Wbxml, &wbxml);
    assert_eq!(tree, tree_of(MediaType::Xml, &sample_xml()));
    // Applied through the same device-tree path as a TNDS bootstrap.
    let device = dir.path().join("device");
    let content = decode_content(MediaType::Wbxml, &wbxml).unwrap();
    write_bootstrap_content(&device, &content.xml).unwrap();
    let written = DirectoryTree::open(&device)
        .unwrap()
        .read_mo("./DMAcc")
        .unwrap()
        .expect("./DMAcc in the device tree");
    assert_eq!(written, tree);
}

#[test]
fn the_previous_refusals_no_longer_happen() {
    let wbxml = std::fs::read(vectors().join("dm-bootstrap.wbxml")).unwrap();
    for (media, packet) in [(MediaType::Wbxml, wbxml), (MediaType::Xml, sample_xml())] {
        if let Err(e) = decode_content(media, &packet) {
            let text = e.to_string();
            assert!(!text.contains("<Permanent>"), "{text}");
            assert!(!text.contains("is not the TNDS namespace"), "{text}");
            panic!("{text}");
        }
    }
}

fn with_body(body: &str) -> String {
    String::from_utf8(sample_xml())
        .unwrap()
        .replace("<Final/>", &format!("{body}<Final/>"))
}

#[test]
fn other_commands_are_refused_by_name_and_place() {
    for cmd in ["Delete", "Exec", "Get"] {
        let xml = with_body(&format!(
            "<{cmd}><CmdID>9</CmdID><Item><Target><LocURI>./DMAcc/w7</LocURI></Target></Item></{cmd}>"
        ));
        let e = decode_content(MediaType::Xml, xml.as_bytes()).unwrap_err();
        match &e {
            BootstrapError::BadMessage(SyncmlError::Command { command, line, .. }) => {
                assert_eq!(command, cmd);
                assert_eq!(*line, 39);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string().contains(&format!("<{cmd}> is not allowed")),
            "{e}"
        );
        assert!(e.to_string().contains("line 39"), "{e}");
    }
}

#[test]
fn malformed_messages_name_the_element() {
    let cases = [
        (
            "<Add><CmdID>9</CmdID><Item><Data>x</Data></Item></Add>",
            "<Item>: has no <Target>",
        ),
        (
            "<Add><CmdID>9</CmdID><Item><Target><LocURI>../x</LocURI></Target><Data>x</Data></Item></Add>",
            "is not a node URI",
        ),
        (
            "<Add><CmdID>9</CmdID><Item><Target><LocURI>./DMAcc/w7/AppID/x</LocURI></Target><Data>x</Data></Item></Add>",
            "has a value and cannot hold nodes",
        ),
        (
            "<Add><CmdID>9</CmdID><Item><Target><LocURI>./DMAcc/w7</LocURI></Target><Data>x</Data></Item></Add>",
            "interior node and cannot take a value",
        ),
        (
            "<Add><CmdID>9</CmdID><Bogus/></Add>",
            "<Bogus>: unexpected in <Add>",
        ),
    ];
    for (body, want) in cases {
        let e = decode_content(MediaType::Xml, with_body(body).as_bytes()).unwrap_err();
        assert!(matches!(e, BootstrapError::BadMessage(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(want) && text.contains("line 39"), "{text}");
    }
    let other_ns = String::from_utf8(sample_xml())
        .unwrap()
        .replace("SYNCML:SYNCML1.2", "urn:other");
    let e = decode_content(MediaType::Xml, other_ns.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("namespace 'urn:other'"), "{e}");
}

#[test]
fn an_item_may_carry_a_tnds_document() {
    let tnds = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/tnds/dmacc.xml"),
    )
    .unwrap();
    let cdata = tnds.trim_start_matches(|c| c != '<');
    let cdata = cdata
        .strip_prefix("<?xml")
        .map(|r| &r[r.find("?>").unwrap() + 2..])
        .unwrap_or(cdata);
    let msg = String::from_utf8(sample_xml()).unwrap();
    let start = msg.find("<SyncBody>").unwrap() + "<SyncBody>".len();
    let end = msg.find("<Final/>").unwrap();
    let msg = format!(
        "{}<Add><CmdID>1</CmdID><Item><Target><LocURI>.</LocURI></Target><Meta><Type \
         xmlns=\"syncml:metinf\">application/vnd.syncml.dmtnds+xml</Type></Meta><Data><![CDATA[{}]]></Data></Item></Add>{}",
        &msg[..start],
        cdata,
        &msg[end..]
    );
    let content = decode_content(MediaType::Xml, msg.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let direct = decode_content(MediaType::Xml, tnds.as_bytes()).unwrap();
    assert_eq!(content.nodes, direct.nodes);
    let mut want = MgmtTree::from_tnds(&tnds).unwrap();
    for n in &mut want.nodes {
        n.path = None;
    }
    want.man = None;
    want.model = None;
    want.ver_dtd = "1.2".into();
    assert_eq!(MgmtTree::from_tnds(&content.xml).unwrap(), want);
}
