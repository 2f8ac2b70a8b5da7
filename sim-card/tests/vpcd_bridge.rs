//! The vpcd bridge against a fake vpcd (a TcpListener or TcpStream in the test
//! playing the reader's side); no pcscd needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dmsc_card_model::commands::{Pin, Request, SelectInfo, AID, PIN_REF_USER};
use dmsc_sim_card::fault::FaultyStore;
use dmsc_sim_card::sim::{self, FileCard};
use dmsc_sim_card::vpcd::{
    serve, BridgeError, BridgeEvent, DetachReason, EchoCard, Endpoint, Power, VirtualCard,
};
use dmsc_sim_card::{AuthorityKeys, Card, InitParams, MemoryStore, ATR};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

/// Generous bound for anything that should take milliseconds.
const WAIT: Duration = Duration::from_secs(10);
/// A guard against a hang, not a speed check: the bridge looks at the
/// shutdown flag every 100 ms, and a stop that waited on a blocking read would
/// never return at all. Nothing here depends on how fast the machine is.
const STOP_BOUND: Duration = WAIT;

// ---- the bridge, run in a thread -------------------------------------------

struct Bridge {
    shutdown: Arc<AtomicBool>,
    events: Receiver<BridgeEvent>,
    handle: Option<JoinHandle<Result<(), BridgeError>>>,
}

impl Bridge {
    fn start(cards: Vec<(Box<dyn VirtualCard>, Endpoint)>) -> Bridge {
        let shutdown = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let flag = shutdown.clone();
        let handle = thread::spawn(move || {
            serve(cards, flag, move |e| {
                let _ = tx.send(e);
            })
        });
        Bridge {
            shutdown,
            events,
            handle: Some(handle),
        }
    }

    /// Waits for the first event that `pred` accepts (skipping others).
    fn wait_for(&self, what: &str, pred: impl Fn(&BridgeEvent) -> bool) -> BridgeEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if pred(&e) => return e,
                Ok(_) => {}
                Err(e) => panic!("no {what} event: {e}"),
            }
        }
    }

    fn listening_addr(&self, index: usize) -> SocketAddr {
        match self.wait_for(
            "Listening",
            |e| matches!(e, BridgeEvent::Listening { index: i, .. } if *i == index),
        ) {
            BridgeEvent::Listening { addr, .. } => addr,
            _ => unreachable!(),
        }
    }

    /// Sets the shutdown flag and returns serve's result and how long it took.
    fn stop(&mut self) -> (Result<(), BridgeError>, Duration) {
        let t = Instant::now();
        self.shutdown.store(true, Ordering::Relaxed);
        let result = self.join();
        (result, t.elapsed())
    }

    /// Waits (bounded) for serve to return on its own.
    fn join(&mut self) -> Result<(), BridgeError> {
        let handle = self.handle.take().expect("joined once");
        let deadline = Instant::now() + WAIT;
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "serve did not return");
            thread::sleep(Duration::from_millis(10));
        }
        handle.join().expect("serve panicked")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }
}

// ---- the fake vpcd ----------------------------------------------------------

/// vpcd's side of one connection.
struct FakeVpcd {
    stream: TcpStream,
}

impl FakeVpcd {
    fn new(stream: TcpStream) -> FakeVpcd {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        FakeVpcd { stream }
    }

    /// Accepts the bridge's connection (normal mode: vpcd listens).
    fn accept(listener: &TcpListener) -> FakeVpcd {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    return FakeVpcd::new(s);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the bridge did not connect");
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Connects to the bridge's listener (reversed mode: vpcd connects).
    fn connect(addr: SocketAddr) -> FakeVpcd {
        FakeVpcd::new(TcpStream::connect(addr).unwrap())
    }

    fn send(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).unwrap();
    }

    fn recv(&mut self) -> Vec<u8> {
        let mut len = [0u8; 2];
        self.stream.read_exact(&mut len).unwrap();
        let mut payload = vec![0u8; u16::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut payload).unwrap();
        payload
    }

    fn control(&mut self, byte: u8) {
        self.send(&[byte]);
    }

    fn atr(&mut self) -> Vec<u8> {
        self.control(0x04);
        self.recv()
    }

    fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.send(apdu);
        self.recv()
    }

    /// vpcd's greeting on a new connection: ATR, power on.
    fn power_up(&mut self) -> Vec<u8> {
        let atr = self.atr();
        self.control(0x01);
        atr
    }

    /// Asserts that the bridge closes the connection (EOF or reset).
    fn expect_closed(&mut self) {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => {}
            Ok(_) => panic!("the bridge sent data instead of closing"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the bridge to close the connection: {e}"),
        }
    }
}

fn sw(rsp: &[u8]) -> u16 {
    assert!(rsp.len() >= 2, "no status word in {rsp:02X?}");
    u16::from_be_bytes([rsp[rsp.len() - 2], rsp[rsp.len() - 1]])
}

fn select_apdu() -> Vec<u8> {
    Request::Select { aid: AID.to_vec() }
        .to_command()
        .to_bytes()
        .unwrap()
}

/// VERIFY of the user PIN; an empty `pin` asks for the tries left.
fn verify_apdu(pin: &[u8]) -> Vec<u8> {
    Request::Verify {
        reference: PIN_REF_USER,
        pin: (!pin.is_empty()).then(|| Pin::new(pin).unwrap()),
    }
    .to_command()
    .to_bytes()
    .unwrap()
}

fn free_listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn authority() -> AuthorityKeys {
    AuthorityKeys {
        key_version: 0x30,
        name: "ServerA".into(),
        enc: Zeroizing::new(vec![0x40; 16]),
        mac: Zeroizing::new(vec![0x41; 16]),
        dek: Zeroizing::new(vec![0x42; 16]),
    }
}

fn file_card(dir: &Path) -> FileCard {
    sim::create(
        &dir.join("card.state"),
        InitParams::with_authorities(vec![authority()]),
    )
    .unwrap()
}

fn is_attached(index: usize) -> impl Fn(&BridgeEvent) -> bool {
    move |e| matches!(e, BridgeEvent::Attached { index: i, .. } if *i == index)
}

fn detached_reason(b: &Bridge, index: usize) -> DetachReason {
    match b.wait_for(
        "Detached",
        |e| matches!(e, BridgeEvent::Detached { index: i, .. } if *i == index),
    ) {
        BridgeEvent::Detached { reason, .. } => reason,
        _ => unreachable!(),
    }
}

// ---- tests -------------------------------------------------------------------

#[test]
fn file_card_atr_select_and_reset_clears_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, addr) = free_listener();
    let mut bridge = Bridge::start(vec![(
        Box::new(file_card(dir.path())),
        Endpoint::Connect(addr),
    )]);
    let mut vpcd = FakeVpcd::accept(&listener);

    assert_eq!(vpcd.power_up(), ATR.to_vec());
    match bridge.wait_for("Attached", is_attached(0)) {
        BridgeEvent::Attached {
            endpoint, socket, ..
        } => {
            assert_eq!(endpoint, Endpoint::Connect(addr));
            assert!(socket.nodelay, "TCP_NODELAY not set");
            #[cfg(target_os = "linux")]
            assert_eq!(socket.quickack, Some(true), "TCP_QUICKACK not set");
        }
        _ => unreachable!(),
    }
    // pcscd's presence poll: ATR again, no state change.
    assert_eq!(vpcd.atr(), ATR.to_vec());

    let rsp = vpcd.transmit(&select_apdu());
    assert_eq!(sw(&rsp), 0x9000);
    let info = SelectInfo::decode(&rsp[..rsp.len() - 2]).unwrap();
    assert_eq!(info.generation, 1);

    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b""))), 0x63C3);
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b"123456"))), 0x9000);
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b""))), 0x9000);

    // Warm reset: the verified PIN is gone.
    vpcd.control(0x02);
    assert_eq!(sw(&vpcd.transmit(&select_apdu())), 0x9000);
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b""))), 0x63C3);

    // Power cycle: the same.
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b"123456"))), 0x9000);
    vpcd.control(0x00);
    vpcd.control(0x01);
    assert_eq!(sw(&vpcd.transmit(&select_apdu())), 0x9000);
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b""))), 0x63C3);

    // A wrong PIN is committed to the state file at once.
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b"0000"))), 0x63C2);
    let (result, took) = bridge.stop();
    result.unwrap();
    assert!(took < STOP_BOUND, "shutdown took {took:?}");
    vpcd.expect_closed();
    let card = sim::open(&dir.path().join("card.state")).unwrap();
    assert_eq!(card.pin_tries().0, 2);
}

#[test]
fn reconnects_after_vpcd_drops_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, addr) = free_listener();
    let mut bridge = Bridge::start(vec![(
        Box::new(file_card(dir.path())),
        Endpoint::Connect(addr),
    )]);

    let mut vpcd = FakeVpcd::accept(&listener);
    vpcd.power_up();
    bridge.wait_for("Attached", is_attached(0));
    assert_eq!(sw(&vpcd.transmit(&select_apdu())), 0x9000);
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b"123456"))), 0x9000);
    drop(vpcd); // pcscd stopped
    assert!(matches!(detached_reason(&bridge, 0), DetachReason::Closed));

    // The bridge connects again; the card lost its volatile state on the way.
    let mut vpcd = FakeVpcd::accept(&listener);
    assert_eq!(vpcd.power_up(), ATR.to_vec());
    bridge.wait_for("Attached again", is_attached(0));
    assert_eq!(sw(&vpcd.transmit(&select_apdu())), 0x9000);
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b""))), 0x63C3);
    bridge.stop().0.unwrap();
}

#[test]
fn retries_while_refused_and_names_the_endpoint() {
    // A port with no listener (yet): connects are refused.
    let (listener, addr) = free_listener();
    drop(listener);
    let mut bridge = Bridge::start(vec![(Box::new(EchoCard), Endpoint::Connect(addr))]);
    match bridge.wait_for("Waiting", |e| matches!(e, BridgeEvent::Waiting { .. })) {
        BridgeEvent::Waiting { index, error } => {
            assert_eq!(index, 0);
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("connect to {addr}: ")),
                "unexpected error text: {text}"
            );
            assert!(matches!(error, BridgeError::Connect { .. }));
        }
        _ => unreachable!(),
    }
    // "pcscd" comes up on that port: the bridge gets through.
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("port {addr} was taken meanwhile ({e}); skipping the rest");
            return;
        }
    };
    let mut vpcd = FakeVpcd::accept(&listener);
    assert_eq!(vpcd.power_up(), EchoCard::ATR.to_vec());
    bridge.wait_for("Attached", is_attached(0));
    let (result, took) = bridge.stop();
    result.unwrap();
    assert!(took < STOP_BOUND, "shutdown took {took:?}");
}

#[test]
fn shutdown_while_refused_is_prompt() {
    let (listener, addr) = free_listener();
    drop(listener);
    let mut bridge = Bridge::start(vec![(Box::new(EchoCard), Endpoint::Connect(addr))]);
    bridge.wait_for("Waiting", |e| matches!(e, BridgeEvent::Waiting { .. }));
    let (result, took) = bridge.stop();
    result.unwrap();
    assert!(took < STOP_BOUND, "shutdown took {took:?}");
}

#[test]
fn echo_card_framing_and_round_trips() {
    let (listener, addr) = free_listener();
    let mut bridge = Bridge::start(vec![(Box::new(EchoCard), Endpoint::Connect(addr))]);
    let mut vpcd = FakeVpcd::accept(&listener);
    assert_eq!(vpcd.power_up(), EchoCard::ATR.to_vec());

    // Case 1..4, short and extended.
    assert_eq!(vpcd.transmit(&[0x00, 0xB0, 0x00, 0x00]), [0x90, 0x00]);
    assert_eq!(vpcd.transmit(&[0x00, 0xB0, 0x00, 0x00, 0x00]), [0x90, 0x00]);
    assert_eq!(
        vpcd.transmit(&[0x00, 0xD6, 0x00, 0x00, 0x02, 0xAB, 0xCD, 0x00]),
        [0xAB, 0xCD, 0x90, 0x00]
    );
    assert_eq!(
        vpcd.transmit(&[0x00, 0xD6, 0x00, 0x00, 0x05, 0x01]),
        [0x67, 0x00]
    );

    // The largest frame: a 65535-byte extended case 4 APDU.
    let nc = 65535 - 4 - 3 - 2;
    let mut big = vec![0x00, 0xD6, 0x00, 0x00, 0x00];
    big.extend_from_slice(&(nc as u16).to_be_bytes());
    big.extend((0..nc).map(|i| i as u8));
    big.extend_from_slice(&[0x00, 0x00]);
    assert_eq!(big.len(), 65535);
    let rsp = vpcd.transmit(&big);
    assert_eq!(rsp.len(), nc + 2);
    assert_eq!(&rsp[..nc], &big[7..7 + nc]);
    assert_eq!(sw(&rsp), 0x9000);

    // A frame that arrives in pieces, with pauses longer than the read timeout.
    let apdu = [0x00, 0xD6, 0x00, 0x00, 0x03, 1, 2, 3];
    vpcd.stream.write_all(&[0x00]).unwrap();
    thread::sleep(Duration::from_millis(250));
    vpcd.stream
        .write_all(&[apdu.len() as u8, 0x00, 0xD6])
        .unwrap();
    thread::sleep(Duration::from_millis(250));
    vpcd.stream.write_all(&apdu[2..]).unwrap();
    assert_eq!(vpcd.recv(), [1, 2, 3, 0x90, 0x00]);

    // Several frames in one write (power on + get ATR, as vpcd may send them).
    vpcd.stream
        .write_all(&[0x00, 0x01, 0x01, 0x00, 0x01, 0x04])
        .unwrap();
    assert_eq!(vpcd.recv(), EchoCard::ATR.to_vec());

    // 200 round trips (latency is measured by hand through pcscd, not asserted).
    let t = Instant::now();
    for i in 0..200u32 {
        let data = i.to_be_bytes();
        let mut apdu = vec![0x80, 0x01, 0x00, 0x00, 4];
        apdu.extend_from_slice(&data);
        let rsp = vpcd.transmit(&apdu);
        assert_eq!(&rsp[..4], &data);
    }
    eprintln!("200 round trips in {:?}", t.elapsed());
    match bridge.wait_for("Attached", is_attached(0)) {
        BridgeEvent::Attached { socket, .. } => {
            assert!(socket.nodelay);
            #[cfg(target_os = "linux")]
            assert_eq!(socket.quickack, Some(true));
        }
        _ => unreachable!(),
    }
    bridge.stop().0.unwrap();
}

#[test]
fn an_empty_frame_or_an_unknown_control_keeps_the_connection_and_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, addr) = free_listener();
    let mut bridge = Bridge::start(vec![(
        Box::new(file_card(dir.path())),
        Endpoint::Connect(addr),
    )]);
    let mut vpcd = FakeVpcd::accept(&listener);
    vpcd.power_up();
    assert_eq!(sw(&vpcd.transmit(&select_apdu())), 0x9000);
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b"123456"))), 0x9000);

    // A zero-length frame (an empty C-APDU): answered 6700 on the same connection.
    vpcd.stream.write_all(&[0x00, 0x00]).unwrap();
    assert_eq!(vpcd.recv(), [0x67, 0x00]);
    match bridge.wait_for("Ignored", |e| matches!(e, BridgeEvent::Ignored { .. })) {
        BridgeEvent::Ignored {
            index: 0,
            error: BridgeError::EmptyFrame { endpoint },
        } => assert_eq!(endpoint, Endpoint::Connect(addr)),
        other => panic!("unexpected event {other:?}"),
    }
    // An unknown control byte: ignored, no answer.
    vpcd.control(0x07);
    assert!(matches!(
        bridge.wait_for("Ignored", |e| matches!(e, BridgeEvent::Ignored { .. })),
        BridgeEvent::Ignored {
            error: BridgeError::UnknownControl { byte: 0x07, .. },
            ..
        }
    ));
    // Same connection, same card session: the PIN is still verified.
    assert_eq!(sw(&vpcd.transmit(&verify_apdu(b""))), 0x9000);
    // Nothing was detached.
    let (result, _) = bridge.stop();
    result.unwrap();
    let events: Vec<_> = bridge.events.try_iter().collect();
    let detached: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, BridgeEvent::Detached { .. }))
        .collect();
    assert!(
        detached.iter().all(|e| matches!(
            e,
            BridgeEvent::Detached {
                reason: DetachReason::Shutdown,
                ..
            }
        )),
        "{events:?}"
    );
}

#[test]
fn truncated_frames_drop_the_connection_and_the_bridge_reconnects() {
    let (listener, addr) = free_listener();
    let mut bridge = Bridge::start(vec![(Box::new(EchoCard), Endpoint::Connect(addr))]);

    // A truncated frame: 10 bytes announced, 3 sent, then EOF.
    let mut vpcd = FakeVpcd::accept(&listener);
    vpcd.power_up();
    vpcd.stream
        .write_all(&[0x00, 0x0A, 0x00, 0xA4, 0x04])
        .unwrap();
    vpcd.stream.shutdown(std::net::Shutdown::Write).unwrap();
    vpcd.expect_closed();
    match detached_reason(&bridge, 0) {
        DetachReason::Error(BridgeError::Truncated { got, expected, .. }) => {
            assert_eq!((got, expected), (5, 12));
        }
        other => panic!("unexpected reason {other:?}"),
    }

    // EOF inside the length header.
    let mut vpcd = FakeVpcd::accept(&listener);
    vpcd.power_up();
    vpcd.stream.write_all(&[0x00]).unwrap();
    vpcd.stream.shutdown(std::net::Shutdown::Write).unwrap();
    vpcd.expect_closed();
    match detached_reason(&bridge, 0) {
        DetachReason::Error(e @ BridgeError::Truncated { .. }) => {
            assert!(e.to_string().contains("1 of 2 bytes"), "{e}")
        }
        other => panic!("unexpected reason {other:?}"),
    }

    // A connection that closes before saying anything: no Attached/Detached, reconnect.
    drop(FakeVpcd::accept(&listener));

    // Still serving.
    let mut vpcd = FakeVpcd::accept(&listener);
    assert_eq!(vpcd.power_up(), EchoCard::ATR.to_vec());
    assert_eq!(vpcd.transmit(&[0x00, 0x00, 0x00, 0x00]), [0x90, 0x00]);
    bridge.stop().0.unwrap();
}

/// A card that goes mute: a dmsc card whose store loses power at its first write.
fn card_that_goes_mute() -> Card<FaultyStore<MemoryStore>, ChaCha20Rng> {
    let card = Card::initialize(
        MemoryStore::new(),
        ChaCha20Rng::from_seed([7; 32]),
        InitParams::with_authorities(vec![authority()]),
    )
    .unwrap();
    let store = FaultyStore::new(card.into_store(), Some(0));
    Card::power_up(store, ChaCha20Rng::from_seed([8; 32])).unwrap()
}

#[test]
fn a_mute_card_is_dropped_and_no_longer_served() {
    let (l0, a0) = free_listener();
    let (l1, a1) = free_listener();
    let mut bridge = Bridge::start(vec![
        (Box::new(card_that_goes_mute()), Endpoint::Connect(a0)),
        (Box::new(EchoCard), Endpoint::Connect(a1)),
    ]);
    let mut v0 = FakeVpcd::accept(&l0);
    let mut v1 = FakeVpcd::accept(&l1);
    v0.power_up();
    v1.power_up();
    assert_eq!(sw(&v0.transmit(&select_apdu())), 0x9000);
    // A wrong PIN needs a write: the power is cut, the card goes mute.
    v0.send(&verify_apdu(b"0000"));
    v0.expect_closed();
    match bridge.wait_for("CardStopped", |e| {
        matches!(e, BridgeEvent::CardStopped { .. })
    }) {
        BridgeEvent::CardStopped { index, error } => {
            assert_eq!(index, 0);
            assert!(matches!(error, BridgeError::CardMute { .. }), "{error}");
        }
        _ => unreachable!(),
    }
    // Card 0 does not come back; card 1 is still served.
    l0.set_nonblocking(true).unwrap();
    thread::sleep(Duration::from_millis(300));
    assert!(matches!(l0.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));
    assert_eq!(v1.transmit(&[0x00, 0x00, 0x00, 0x00]), [0x90, 0x00]);

    let (result, _) = bridge.stop();
    match result {
        Err(BridgeError::Failed(f)) => {
            assert_eq!(f.len(), 1);
            assert_eq!(f[0].0, 0);
            assert!(matches!(f[0].1, BridgeError::CardMute { .. }));
        }
        other => panic!("unexpected result {other:?}"),
    }
}

#[test]
fn serve_returns_when_every_card_has_failed() {
    let (listener, addr) = free_listener();
    let mut bridge = Bridge::start(vec![(
        Box::new(card_that_goes_mute()),
        Endpoint::Connect(addr),
    )]);
    let mut vpcd = FakeVpcd::accept(&listener);
    vpcd.power_up();
    assert_eq!(sw(&vpcd.transmit(&select_apdu())), 0x9000);
    vpcd.send(&verify_apdu(b"0000"));
    vpcd.expect_closed();
    // No shutdown: serve returns by itself.
    assert!(matches!(bridge.join(), Err(BridgeError::Failed(_))));
    bridge.wait_for("Stopped", |e| matches!(e, BridgeEvent::Stopped));
}

/// Records power events and answers slowly.
struct SlowCard {
    delay: Duration,
    powers: Arc<std::sync::Mutex<Vec<Power>>>,
    /// Told when an APDU arrives (so the test stops the bridge while it is in flight).
    busy: Option<std::sync::mpsc::Sender<()>>,
}

impl VirtualCard for SlowCard {
    fn atr(&self) -> Vec<u8> {
        EchoCard::ATR.to_vec()
    }
    fn power(&mut self, event: Power) {
        self.powers.lock().unwrap().push(event);
    }
    fn transmit(&mut self, _apdu: &[u8]) -> Option<Vec<u8>> {
        if let Some(busy) = &self.busy {
            let _ = busy.send(());
        }
        thread::sleep(self.delay);
        Some(vec![0x90, 0x00])
    }
}

#[test]
fn shutdown_finishes_the_apdu_in_flight() {
    let powers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (listener, addr) = free_listener();
    let (busy, card_busy) = std::sync::mpsc::channel();
    let card = SlowCard {
        delay: Duration::from_millis(500),
        powers: powers.clone(),
        busy: Some(busy),
    };
    let mut bridge = Bridge::start(vec![(Box::new(card), Endpoint::Connect(addr))]);
    let mut vpcd = FakeVpcd::accept(&listener);
    vpcd.power_up();
    vpcd.control(0x02);
    vpcd.control(0x00);
    vpcd.send(&[0x00, 0x00, 0x00, 0x00]);
    card_busy
        .recv_timeout(WAIT)
        .expect("the APDU reached the card");
    let (result, took) = bridge.stop();
    result.unwrap();
    assert!(took < STOP_BOUND, "shutdown took {took:?}");
    // The reply came, then the connection was closed.
    assert_eq!(vpcd.recv(), [0x90, 0x00]);
    vpcd.expect_closed();
    // Power events in order; the last one is the disconnection.
    assert_eq!(
        *powers.lock().unwrap(),
        [Power::On, Power::Reset, Power::Off, Power::Off]
    );
}

#[test]
fn reversed_mode_accepts_again_after_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::start(vec![
        (
            Box::new(file_card(dir.path())),
            Endpoint::Listen("127.0.0.1:0".parse().unwrap()),
        ),
        (
            Box::new(EchoCard),
            Endpoint::Listen("127.0.0.1:0".parse().unwrap()),
        ),
    ]);
    let a0 = bridge.listening_addr(0);
    let a1 = bridge.listening_addr(1);
    assert_ne!(a0.port(), 0);

    let mut v0 = FakeVpcd::connect(a0);
    assert_eq!(v0.power_up(), ATR.to_vec());
    match bridge.wait_for("Attached", is_attached(0)) {
        BridgeEvent::Attached {
            endpoint, socket, ..
        } => {
            assert!(matches!(endpoint, Endpoint::Listen(_)));
            assert!(socket.nodelay);
            #[cfg(target_os = "linux")]
            assert_eq!(socket.quickack, Some(true));
        }
        _ => unreachable!(),
    }
    assert_eq!(sw(&v0.transmit(&select_apdu())), 0x9000);
    assert_eq!(sw(&v0.transmit(&verify_apdu(b"123456"))), 0x9000);
    drop(v0); // pcscd restarts
    assert!(matches!(detached_reason(&bridge, 0), DetachReason::Closed));

    let mut v0 = FakeVpcd::connect(a0);
    assert_eq!(v0.power_up(), ATR.to_vec());
    assert_eq!(sw(&v0.transmit(&select_apdu())), 0x9000);
    assert_eq!(sw(&v0.transmit(&verify_apdu(b""))), 0x63C3);

    let mut v1 = FakeVpcd::connect(a1);
    assert_eq!(v1.power_up(), EchoCard::ATR.to_vec());
    assert_eq!(
        v1.transmit(&[0x00, 0x00, 0x00, 0x00, 0x01, 0x55]),
        [0x55, 0x90, 0x00]
    );

    let (result, took) = bridge.stop();
    result.unwrap();
    assert!(took < STOP_BOUND, "shutdown took {took:?}");
    v0.expect_closed();
    v1.expect_closed();
    // The listeners are gone.
    assert!(TcpStream::connect(a0).is_err());
}

#[test]
fn reversed_mode_shutdown_while_idle_is_prompt() {
    let mut bridge = Bridge::start(vec![(
        Box::new(EchoCard),
        Endpoint::Listen("127.0.0.1:0".parse().unwrap()),
    )]);
    bridge.listening_addr(0);
    let (result, took) = bridge.stop();
    result.unwrap();
    assert!(took < STOP_BOUND, "shutdown took {took:?}");
    let rest: Vec<_> = bridge.events.try_iter().collect();
    assert!(
        matches!(rest.last(), Some(BridgeEvent::Stopped)),
        "{rest:?}"
    );
}

#[test]
fn configuration_errors_are_returned_at_once() {
    let shutdown = Arc::new(AtomicBool::new(false));
    let r = serve(
        vec![(
            Box::new(EchoCard) as Box<dyn VirtualCard>,
            Endpoint::Listen("0.0.0.0:0".parse().unwrap()),
        )],
        shutdown.clone(),
        |_| {},
    );
    assert!(matches!(r, Err(BridgeError::NotLoopback(_))), "{r:?}");

    let (taken, addr) = free_listener();
    let r = serve(
        vec![(
            Box::new(EchoCard) as Box<dyn VirtualCard>,
            Endpoint::Listen(addr),
        )],
        shutdown.clone(),
        |_| {},
    );
    match r {
        Err(e @ BridgeError::Bind { .. }) => {
            assert!(
                e.to_string().starts_with(&format!("listen on {addr}: ")),
                "{e}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(taken);

    let r = serve(Vec::new(), shutdown, |_| {});
    assert!(matches!(r, Err(BridgeError::NoCards)));
}
