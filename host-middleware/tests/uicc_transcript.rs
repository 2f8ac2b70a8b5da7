//! Replays a modem vendor's published unit test of reading the LwM2M
//! bootstrap from a UICC over AT+CSIM (`test-vectors/uicc/nrf-uicc-lwm2m-csim.json`,
//! source named in the file): the host must send exactly the APDUs of that
//! test and decode the bootstrap file it reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::path::Path;

use dmsc_host::uicc::{self, lwm2m::Value, UiccError};
use dmsc_host::{Session, Transport, TransportError};

/// `AT+CSIM=<len>,"<hex>"` or `+CSIM: <len>,"<hex>"`: the hex, with its
/// length field checked (it counts hex characters, 3GPP TS 27.007 §8.17).
fn csim_hex(line: &str, prefix: &str) -> Vec<u8> {
    let rest = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let (len, quoted) = rest.split_once(',').expect("length, then data");
    let hex_text = quoted.trim_matches('"');
    assert_eq!(
        len.trim().parse::<usize>().unwrap(),
        hex_text.len(),
        "{line}"
    );
    hex::decode(hex_text).unwrap()
}

struct Replay {
    steps: VecDeque<(String, Vec<u8>, Vec<u8>)>,
}

impl Transport for Replay {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let (note, expect, reply) = self
            .steps
            .pop_front()
            .unwrap_or_else(|| panic!("extra command {}", hex::encode_upper(apdu)));
        assert_eq!(
            hex::encode_upper(apdu),
            hex::encode_upper(&expect),
            "step {note:?}"
        );
        Ok(reply)
    }
    fn atr(&self) -> Vec<u8> {
        Vec::new()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn reader_name(&self) -> &str {
        "AT+CSIM transcript"
    }
    fn supports_extended(&self) -> bool {
        false
    }
    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        body(self);
        Ok(())
    }
}

fn load() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/uicc/nrf-uicc-lwm2m-csim.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(doc["source"].as_str().unwrap().contains("sdk-nrf"));
    doc
}

fn case(doc: &serde_json::Value, name: &str) -> (Session<Replay>, serde_json::Value) {
    let c = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    let steps = c["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["note"].as_str().unwrap().to_string(),
                csim_hex(e["at"].as_str().unwrap(), "AT+CSIM="),
                csim_hex(e["response"].as_str().unwrap(), "+CSIM: "),
            )
        })
        .collect();
    (Session::new(Replay { steps }), c["expect"].clone())
}

fn done(s: Session<Replay>) {
    let left = s.into_transport().steps;
    assert!(left.is_empty(), "unsent: {left:?}");
}

#[test]
fn vendor_success_same_reads_same_bootstrap() {
    let doc = load();
    let (mut s, expect) = case(&doc, "success");
    let raw = uicc::read_lwm2m_bootstrap_raw(&mut s).unwrap();
    done(s);
    assert_eq!(
        hex::encode_upper(&raw),
        expect["bootstrap_hex"].as_str().unwrap()
    );
    let file = uicc::BootstrapFile::decode(&raw).unwrap();
    let got = file.entries();
    let want = expect["entries"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for ((path, value), w) in got.iter().zip(want) {
        assert_eq!(path, w[0].as_str().unwrap());
        let ok = match (w[1].as_str().unwrap(), value) {
            ("string", Value::String(s)) => w[2] == s.as_str(),
            ("boolean", Value::Boolean(b)) => w[2] == *b,
            ("integer", Value::Integer(i)) => w[2] == *i,
            _ => false,
        };
        assert!(ok, "{path}: {value:?} vs {w}");
    }
}

#[test]
fn vendor_success_decoded_in_one_call() {
    let doc = load();
    let (mut s, _) = case(&doc, "success");
    let file = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
    done(s);
    assert_eq!(file.objects[0].id, 0);
}

#[test]
fn vendor_application_not_found() {
    let doc = load();
    let (mut s, _) = case(&doc, "application_not_found");
    let e = uicc::read_lwm2m_bootstrap_raw(&mut s).unwrap_err();
    done(s);
    assert!(
        matches!(e, UiccError::NoPkcs15Application { sw: 0x6A82 }),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .starts_with("this card has no PKCS#15 application"));
}

#[test]
fn vendor_bootstrap_not_found() {
    let doc = load();
    let (mut s, _) = case(&doc, "bootstrap_not_found");
    let e = uicc::read_lwm2m_bootstrap_raw(&mut s).unwrap_err();
    done(s);
    assert!(matches!(e, UiccError::NoDataObject { .. }), "{e:?}");
    assert!(e.to_string().contains("2.23.43.9.1"), "{e}");
}
