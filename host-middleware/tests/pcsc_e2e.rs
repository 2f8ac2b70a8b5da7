//! End to end: host ↔ pcscd ↔ vpcd ↔ the simulated card, on the private
//! pcscd of `.ci/test`. Each test uses its own vpcd slot.

mod e2e;
mod support;

use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use dmsc_host::card_model::commands::{MoRecord, ObjectValue};
use dmsc_host::card_model::objects::ObjectRef;
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::transport::sim::FileSimTransport;
use dmsc_host::{open_secure_channel, CardCommands, HostError, Session, TransportError};
use dmsc_sim_card::vpcd::{Power, VirtualCard};
use e2e::*;
use support::*;

#[test]
fn select_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 0, card_params(false));
    let mut s = session(&served.reader);
    select_reports_capabilities(&mut s);
    assert!(s.limits().extended, "vpcd carries extended APDUs");
}

#[test]
fn pin_countdown_and_block_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 1, card_params(false));
    pin_countdown_and_block(&mut session(&served.reader));
}

#[test]
fn scp03_every_level_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 2, card_params(false));
    scp03_every_level(&mut session(&served.reader));
    served.pull();
    let s16 = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(s16.path(), 2, card_params(true));
    scp03_every_level(&mut session(&served.reader));
}

#[test]
fn transfers_64k_extended_length_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 3, card_params(false));
    let mut s = session(&served.reader);
    transfers_64k(&mut s);
    assert!(s.limits().extended);
}

#[test]
fn transfers_64k_chaining_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 4, card_params(false));
    let mut ctx = dmsc_host::PcscContext::establish().unwrap();
    let mut s = Session::new(ShortOnly(ctx.connect(&served.reader).unwrap()));
    transfers_64k(&mut s);
    assert!(!s.limits().extended);
}

#[test]
fn trace_redacts_pins_through_pcscd() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 5, card_params(false));
    trace_redacts_pins(&mut session(&served.reader));
}

/// A card that is pulled out of the reader right after it answered its `n`-th
/// APDU: the bridge stops before the next one and drops the connection, and
/// pcscd sees the card removed.
struct PulledAt<C> {
    card: C,
    n: usize,
    seen: Arc<AtomicUsize>,
    pull: Arc<AtomicBool>,
}

impl<C: VirtualCard> VirtualCard for PulledAt<C> {
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn power(&mut self, event: Power) {
        self.card.power(event)
    }
    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 >= self.n {
            self.pull.store(true, Ordering::SeqCst);
        }
        self.card.transmit(apdu)
    }
}

#[test]
fn card_removed_mid_operation_is_typed_and_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pulled.state");
    drop(dmsc_sim_card::sim::create(&path, card_params(false)).unwrap());
    let object = ObjectRef::Mo("./Pulled".into());
    let record = |byte: u8| {
        ObjectValue::Mo(MoRecord {
            mo_type: "urn:x-dmsc:test".into(),
            version: 0,
            content: vec![byte; 50_000],
        })
    };
    // First an old value, written in-process (the slot is used once only: a
    // vpcd slot is slow to see a new card right after one was pulled).
    {
        let mut s = Session::new(FileSimTransport::open(&path).unwrap());
        open_secure_channel(&mut s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
        s.put_object(&object, &record(1), None).unwrap();
    }
    // Then the new value, with the card pulled in the middle of the command chain.
    let seen = Arc::new(AtomicUsize::new(0));
    {
        let pull = Arc::new(AtomicBool::new(false));
        let card = PulledAt {
            card: dmsc_sim_card::sim::open(&path).unwrap(),
            n: 40,
            seen: seen.clone(),
            pull: pull.clone(),
        };
        let served = Served::start_with(6, Box::new(card), pull);
        let mut ctx = dmsc_host::PcscContext::establish().unwrap();
        let mut s = Session::new(ShortOnly(ctx.connect(&served.reader).unwrap()));
        open_secure_channel(&mut s, &server_a(), SecurityLevel::new(0x33).unwrap()).unwrap();
        let err = s.put_object(&object, &record(2), None).unwrap_err();
        assert!(
            matches!(
                err,
                HostError::Transport(TransportError::CardRemoved | TransportError::NoCard { .. })
            ),
            "a pulled card gives a typed error, got {err:?}"
        );
        served.pull();
    }
    assert!(seen.load(Ordering::SeqCst) >= 40);
    // The card holds the old value: nothing of the interrupted write.
    let mut s = Session::new(FileSimTransport::open(&path).unwrap());
    match s.read_object(&object).unwrap().value {
        ObjectValue::Mo(m) => assert_eq!(m.content, vec![1; 50_000]),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn opensc_tool_selects_and_reads_the_simulated_card() {
    let dir = tempfile::tempdir().unwrap();
    let (served, _) = serve_new_card(dir.path(), 7, card_params(false));
    // SELECT the applet, then GET DATA of the identity key (object reference 87 00).
    let out = Process::new("opensc-tool")
        .args([
            "-r",
            &served.reader,
            "-s",
            "00A4040007F0444D5343000100",
            "-s",
            "00CB3FFF02870000",
        ])
        .output()
        .expect("opensc-tool runs (installed by .ci/install-deps)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "opensc-tool failed:\n{text}");
    let ok = text.matches("SW1=0x90, SW2=0x00").count();
    assert_eq!(ok, 2, "both APDUs answer 9000:\n{text}");
    // The FCI template and the identity key's value (53 … D5 41 04 …) in the answers.
    let compact: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(compact.contains("6F "), "FCI missing:\n{text}");
    assert!(
        compact.contains("D5 41 04"),
        "identity public key missing:\n{text}"
    );
}
