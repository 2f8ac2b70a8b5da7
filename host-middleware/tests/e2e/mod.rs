//! The PC/SC end-to-end harness: a simulated card served through the vpcd
//! bridge on one slot of the private pcscd that `.ci/test` starts
//! (`.ci/pcsc-env`), and a PC/SC session to it.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dmsc_host::{PcscCard, PcscContext, Session};
use dmsc_sim_card::vpcd::{self, BridgeEvent, Endpoint, VirtualCard};
use dmsc_sim_card::InitParams;

/// The environment `.ci/pcsc-env start` exports, or a failure that says how to get it.
pub struct Env {
    pub port: u16,
    pub readers: Vec<String>,
    pub pcsc_dir: PathBuf,
}

pub fn env() -> Env {
    let get = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the end-to-end tests need the private pcscd of the test \
                 command. Run `bash .ci/test`, or `eval \"$(.ci/pcsc-env start /tmp/dmsc-pcsc)\"` \
                 before `cargo test --features e2e`."
            )
        })
    };
    let _socket = get("PCSCLITE_CSOCK_NAME");
    Env {
        port: get("DMSC_VPCD_PORT")
            .parse()
            .expect("DMSC_VPCD_PORT is a port number"),
        readers: get("DMSC_VPCD_READERS")
            .split(';')
            .map(str::to_string)
            .collect(),
        pcsc_dir: PathBuf::from(get("DMSC_PCSC_DIR")),
    }
}

/// A card served on one vpcd slot until dropped.
pub struct Served {
    pub reader: String,
    pub slot: usize,
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub events: mpsc::Receiver<BridgeEvent>,
}

impl Served {
    /// Serves `card` on `slot` and waits until pcscd reports it present.
    pub fn start(slot: usize, card: Box<dyn VirtualCard>) -> Served {
        Served::start_with(slot, card, Arc::new(AtomicBool::new(false)))
    }

    /// Like [`Served::start`], with the bridge's shutdown flag given: setting it
    /// pulls the card out of the reader between two APDUs.
    pub fn start_with(
        slot: usize,
        card: Box<dyn VirtualCard>,
        shutdown: Arc<AtomicBool>,
    ) -> Served {
        let env = env();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, env.port + slot as u16));
        let card = SharedCard(Arc::new(Mutex::new(card)));
        let reader = env.readers[slot].clone();
        // A vpcd slot that just lost a card now and then does not report the
        // next one: after a bounded wait the bridge connects again (same card).
        for attempt in 1..=3 {
            shutdown.store(false, Ordering::SeqCst);
            let (tx, events) = mpsc::channel();
            let flag = shutdown.clone();
            let served_card = card.clone();
            let thread = std::thread::spawn(move || {
                let cards: Vec<(Box<dyn VirtualCard>, Endpoint)> =
                    vec![(Box::new(served_card), Endpoint::Connect(addr))];
                let _ = vpcd::serve(cards, flag, move |e| {
                    let _ = tx.send(e);
                });
            });
            let mut served = Served {
                reader: reader.clone(),
                slot,
                shutdown: shutdown.clone(),
                thread: Some(thread),
                events,
            };
            served.wait_attached();
            let wait = if attempt < 3 { 8 } else { 20 };
            if present_within(&served.reader, true, Duration::from_secs(wait)) {
                return served;
            }
            served.stop();
            present_within(&served.reader, false, Duration::from_secs(5));
        }
        panic!("{reader}: the card was attached three times but pcscd never reported it present");
    }

    fn wait_attached(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(BridgeEvent::Attached { .. }) => return,
                Ok(BridgeEvent::CardStopped { error, .. }) => panic!("card stopped: {error}"),
                Ok(_) => {}
                Err(_) => panic!("slot {}: the card was not attached within 20 s", self.slot),
            }
        }
    }

    /// Pulls the card: stops serving it and waits until pcscd sees it gone.
    pub fn pull(mut self) {
        self.stop();
        wait_present(&self.reader, false);
    }

    fn stop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (event-driven, bounded) until `reader` holds a card or not.
pub fn wait_present(reader: &str, present: bool) {
    assert!(
        present_within(reader, present, Duration::from_secs(20)),
        "{reader}: card present never became {present}"
    );
}

/// Whether `reader` holds a card (or not) within `limit`.
pub fn present_within(reader: &str, present: bool, limit: Duration) -> bool {
    let mut ctx = PcscContext::establish().expect("PC/SC context");
    let deadline = Instant::now() + limit;
    loop {
        let readers = ctx.list_readers().expect("list readers");
        if readers
            .iter()
            .any(|r| r.name == reader && r.card_present == present)
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let _ = ctx.wait_for_change(Some(Duration::from_millis(500)));
    }
}

/// One card shared by the bridges a test starts one after another.
#[derive(Clone)]
struct SharedCard(Arc<Mutex<Box<dyn VirtualCard>>>);

impl VirtualCard for SharedCard {
    fn atr(&self) -> Vec<u8> {
        self.0.lock().map(|c| c.atr()).unwrap_or_default()
    }
    fn power(&mut self, event: vpcd::Power) {
        if let Ok(mut c) = self.0.lock() {
            c.power(event)
        }
    }
    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|mut c| c.transmit(apdu))
    }
}

/// A new simulated card in `dir`, served on `slot`.
pub fn serve_new_card(dir: &Path, slot: usize, params: InitParams) -> (Served, PathBuf) {
    let path = dir.join(format!("card{slot}.state"));
    let card = dmsc_sim_card::sim::create(&path, params).expect("new card");
    (Served::start(slot, Box::new(card)), path)
}

/// A PC/SC session to the card in `reader`.
pub fn session(reader: &str) -> Session<PcscCard> {
    let mut ctx = PcscContext::establish().expect("PC/SC context");
    Session::new(ctx.connect(reader).expect("connect"))
}
