//! A bridge that plugs virtual cards into vsmartcard's **vpcd** reader driver,
//! so that pcscd (and every PC/SC client) sees them as cards in a reader.
//!
//! # The wire protocol (card side)
//!
//! Both directions carry frames: a 2-byte big-endian length, then that many
//! payload bytes. From vpcd to the card, a 1-byte payload is a control message:
//! [`control::POWER_OFF`] (`00`), [`control::POWER_ON`] (`01`) and
//! [`control::RESET`] (`02`) get no reply; [`control::GET_ATR`] (`04`) is
//! answered by the ATR as one frame. Any longer payload is a C-APDU, answered
//! by the R-APDU as one frame.
//!
//! Malformed messages do not cost the card its connection or its state: a
//! zero-length frame (an empty C-APDU) is answered `67 00` (wrong length)
//! without reaching the card, and an unknown 1-byte control message is
//! ignored. Both are reported as [`BridgeEvent::Ignored`]. Only a broken
//! stream (a frame cut short by the connection's end, a failed read or write)
//! drops the connection.
//!
//! # Modes
//!
//! - [`Endpoint::Connect`] (vpcd's normal mode): vpcd listens on one TCP port
//!   per slot and the card connects to it. While the port refuses connections
//!   (pcscd not started yet, or restarting) the bridge retries with a short
//!   backoff (10 ms doubling to 200 ms); when vpcd drops the connection (pcscd
//!   stopped or restarted) the bridge connects again.
//! - [`Endpoint::Listen`] ("reversed" mode): the bridge listens on a loopback
//!   address and vpcd connects to it; when vpcd drops the connection the bridge
//!   accepts the next one.
//!
//! # When a card counts as attached
//!
//! [`BridgeEvent::Attached`] is emitted when the **first complete frame**
//! arrives on a new connection, just before it is answered. A TCP connection
//! alone proves nothing in normal mode: vpcd listens with backlog 0, so the
//! kernel completes the handshake at once but vpcd only `accept()`s at its next
//! presence poll (up to ~0.45 s later), and then sends `04` (get ATR). That
//! first frame is the moment the reader sees the card. After a connection ends
//! the card gets [`Power::Off`] (a card pulled out of a reader loses its
//! volatile state) and, if it had been attached, a [`BridgeEvent::Detached`].
//!
//! # Latency
//!
//! vpcd writes a frame's length and payload with two `send()` calls and does not
//! set `TCP_NODELAY`, so a card that lets the kernel delay its ACKs waits ~40 ms
//! per message. Every connection gets `TCP_NODELAY`, and `TCP_QUICKACK` is set
//! again after **every** read, because Linux clears it (measured: ~48 ms per
//! APDU without, ~0.1 ms with). Each reply is written as one buffer.
//!
//! # Stopping
//!
//! [`serve`] checks its shutdown flag before each frame and at least every
//! [`POLL_INTERVAL`] while waiting (read and accept timeouts, no busy wait). A
//! command being processed is always finished and answered first. A card whose
//! state lives in a file commits each command, so stopping between commands
//! loses nothing.
//!
//! A card that goes mute ([`VirtualCard::transmit`] returns `None`, e.g. a
//! [`FileCard`](crate::sim::FileCard) after a failed write) is never answered
//! with made-up bytes: the bridge drops the connection (the reader sees the
//! card removed) and stops serving that card with [`BridgeError::CardMute`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dmsc_card_model::apdu::{Command, Status};
use rand_core::{CryptoRng, RngCore};
use socket2::SockRef;

use crate::applet::Card;
use crate::store::PersistentMemory;

/// The longest wait between two looks at the shutdown flag (read and accept timeouts).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Timeout of one connect attempt in [`Endpoint::Connect`] mode.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// A reply that cannot be written within this time drops the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay after a refused connect; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest retry delay between connect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// The largest payload a frame can carry (its length field has 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// The 1-byte control payloads vpcd sends to the card.
pub mod control {
    /// Power off; no reply.
    pub const POWER_OFF: u8 = 0x00;
    /// Power on; no reply.
    pub const POWER_ON: u8 = 0x01;
    /// Warm reset; no reply.
    pub const RESET: u8 = 0x02;
    /// Get the ATR; the reply is the ATR.
    pub const GET_ATR: u8 = 0x04;
}

/// A power event from the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// The reader cut the power (also sent when the connection to vpcd ends).
    Off,
    /// The reader powered the card up (cold reset).
    On,
    /// Warm reset.
    Reset,
}

/// A card that the bridge can plug into a vpcd slot.
pub trait VirtualCard: Send {
    /// The answer to reset, as sent for `04`. Asked every ~0.44 s by pcscd's
    /// presence poll, so it must not change the card's state.
    fn atr(&self) -> Vec<u8>;
    /// A power event; a real card loses all volatile state on each of them.
    fn power(&mut self, event: Power);
    /// Processes one C-APDU and returns the R-APDU (data + SW1 SW2), or `None`
    /// when the card is mute and will never answer again.
    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>>;
}

/// The simulated dmsc card (e.g. a [`FileCard`](crate::sim::FileCard)):
/// every power event is [`Card::reset`], the ATR is [`Card::atr`], and a card
/// that answers nothing ([`Card::process`] returns no bytes after a failed
/// persistent write) is mute.
impl<S, R> VirtualCard for Card<S, R>
where
    S: PersistentMemory + Send,
    R: RngCore + CryptoRng + Send,
{
    fn atr(&self) -> Vec<u8> {
        Card::atr(self).to_vec()
    }

    fn power(&mut self, _event: Power) {
        self.reset();
    }

    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        let rsp = self.process(apdu);
        if rsp.is_empty() {
            None
        } else {
            Some(rsp)
        }
    }
}

/// A card that takes `latency` to answer each APDU, as a real card's
/// processing time does (see `docs/pcsc-testing.md` for the figures of real
/// cards this models). The one place where the simulated card is slowed down:
/// `dmsc sim serve --latency` and the fleet benchmark use it.
pub struct WithLatency<C> {
    card: C,
    latency: Duration,
}

impl<C: VirtualCard> WithLatency<C> {
    /// `card`, answering each APDU `latency` after it arrived.
    pub fn new(card: C, latency: Duration) -> Self {
        Self { card, latency }
    }
}

impl<C: VirtualCard> VirtualCard for WithLatency<C> {
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn power(&mut self, event: Power) {
        self.card.power(event);
    }
    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        let started = Instant::now();
        let rsp = self.card.transmit(apdu);
        if let Some(left) = self.latency.checked_sub(started.elapsed()) {
            thread::sleep(left);
        }
        rsp
    }
}

/// A stateless card that answers every well-formed APDU with its command data
/// followed by `9000` (and a malformed one with `6700`): the baseline for
/// measuring the bridge's own overhead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EchoCard;

impl EchoCard {
    /// The echo card's ATR: `3B 80 80 01 01` (T=1, no historical bytes).
    pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];
}

impl VirtualCard for EchoCard {
    fn atr(&self) -> Vec<u8> {
        Self::ATR.to_vec()
    }

    fn power(&mut self, _event: Power) {}

    fn transmit(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        Some(match Command::decode(apdu) {
            Ok(cmd) => {
                let mut rsp = cmd.data;
                rsp.extend_from_slice(&<[u8; 2]>::from(Status::Success));
                rsp
            }
            Err(_) => <[u8; 2]>::from(Status::WrongLength).to_vec(),
        })
    }
}

/// Where a card meets vpcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Connect to a vpcd slot that listens at this address (vpcd's normal mode).
    Connect(SocketAddr),
    /// Listen at this loopback address and accept vpcd's connection (reversed
    /// mode). Port 0 picks a free port, reported by [`BridgeEvent::Listening`].
    Listen(SocketAddr),
}

impl Endpoint {
    /// The configured address.
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Endpoint::Connect(a) | Endpoint::Listen(a) => a,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Connect(a) => write!(f, "vpcd at {a}"),
            Endpoint::Listen(a) => write!(f, "listener {a}"),
        }
    }
}

/// Socket options of a connection, read back from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `TCP_QUICKACK` just after the last read (`None` where the platform has no such option).
    pub quickack: Option<bool>,
}

/// Why a connection to vpcd ended.
#[derive(Debug, Clone)]
pub enum DetachReason {
    /// vpcd closed the connection between two frames (pcscd stopped or restarted).
    Closed,
    /// The shutdown flag was set.
    Shutdown,
    /// A socket or protocol error; the bridge reconnects (or re-accepts) unless
    /// it is [`BridgeError::CardMute`].
    Error(BridgeError),
}

impl fmt::Display for DetachReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetachReason::Closed => f.write_str("vpcd closed the connection"),
            DetachReason::Shutdown => f.write_str("shutdown"),
            DetachReason::Error(e) => write!(f, "{e}"),
        }
    }
}

/// What the bridge reports while it runs. `index` is the card's position in
/// the list given to [`serve`].
#[derive(Debug, Clone)]
pub enum BridgeEvent {
    /// A [`Endpoint::Listen`] card's listener is bound (emitted by [`serve`]
    /// before any card thread starts); `addr` is the actual local address.
    Listening {
        /// The card's position in the list given to [`serve`].
        index: usize,
        /// The listener's actual local address.
        addr: SocketAddr,
    },
    /// The first failure of a series of attempts to reach vpcd (a refused
    /// connect, a connection that failed before vpcd sent anything, a failed
    /// accept); the bridge keeps retrying. The next series starts once the
    /// card has been attached again.
    Waiting {
        /// The card's position in the list given to [`serve`].
        index: usize,
        /// What went wrong.
        error: BridgeError,
    },
    /// vpcd sent the first frame on a new connection: the reader sees the card.
    Attached {
        /// The card's position in the list given to [`serve`].
        index: usize,
        /// The card's endpoint.
        endpoint: Endpoint,
        /// vpcd's address.
        peer: SocketAddr,
        /// The connection's socket options at that moment.
        socket: SocketOptions,
    },
    /// An attached card's connection ended.
    Detached {
        /// The card's position in the list given to [`serve`].
        index: usize,
        /// The card's endpoint.
        endpoint: Endpoint,
        /// Why it ended.
        reason: DetachReason,
    },
    /// The card is no longer served because of this error (the others go on).
    CardStopped {
        /// The card's position in the list given to [`serve`].
        index: usize,
        /// What went wrong.
        error: BridgeError,
    },
    /// A malformed message ([`BridgeError::EmptyFrame`], answered `67 00`, or
    /// [`BridgeError::UnknownControl`], not answered). Connection and card stay.
    Ignored {
        /// The card's position in the list given to [`serve`].
        index: usize,
        /// What went wrong.
        error: BridgeError,
    },
    /// Every card thread has ended; [`serve`] is about to return.
    Stopped,
}

impl fmt::Display for BridgeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeEvent::Listening { index, addr } => {
                write!(f, "card {index}: listening on {addr}")
            }
            BridgeEvent::Waiting { index, error } => write!(f, "card {index}: waiting: {error}"),
            BridgeEvent::Attached {
                index,
                endpoint,
                peer,
                socket,
            } => write!(
                f,
                "card {index}: attached ({endpoint}, peer {peer}, nodelay {}, quickack {:?})",
                socket.nodelay, socket.quickack
            ),
            BridgeEvent::Detached {
                index,
                endpoint,
                reason,
            } => write!(f, "card {index}: detached from {endpoint}: {reason}"),
            BridgeEvent::CardStopped { index, error } => {
                write!(f, "card {index}: stopped: {error}")
            }
            BridgeEvent::Ignored { index, error } => {
                write!(f, "card {index}: ignored: {error}")
            }
            BridgeEvent::Stopped => f.write_str("bridge stopped"),
        }
    }
}

/// What went wrong, naming the endpoint and the failed step. Cheap to clone
/// (I/O errors are shared).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BridgeError {
    /// [`serve`] was given no card.
    #[error("no card to serve")]
    NoCards,
    /// A [`Endpoint::Listen`] address that is not a loopback address.
    #[error("listen on {0}: not a loopback address (a virtual card must not be reachable from the network)")]
    NotLoopback(SocketAddr),
    /// Binding a [`Endpoint::Listen`] address failed.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address concerned.
        addr: SocketAddr,
        #[source]
        /// The I/O error.
        source: Arc<io::Error>,
    },
    /// A connect attempt failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address concerned.
        addr: SocketAddr,
        #[source]
        /// The I/O error.
        source: Arc<io::Error>,
    },
    /// `accept()` failed.
    #[error("accept on {addr}: {source}")]
    Accept {
        /// The address concerned.
        addr: SocketAddr,
        #[source]
        /// The I/O error.
        source: Arc<io::Error>,
    },
    /// Setting or reading a socket option failed.
    #[error("{endpoint}: {what}: {source}")]
    Socket {
        /// The card's endpoint.
        endpoint: Endpoint,
        /// The socket option or step.
        what: &'static str,
        #[source]
        /// The I/O error.
        source: Arc<io::Error>,
    },
    /// Reading from vpcd failed.
    #[error("{endpoint}: read: {source}")]
    Read {
        /// The card's endpoint.
        endpoint: Endpoint,
        #[source]
        /// The I/O error.
        source: Arc<io::Error>,
    },
    /// Writing to vpcd failed (or timed out after [`WRITE_TIMEOUT`]).
    #[error("{endpoint}: write: {source}")]
    Write {
        /// The card's endpoint.
        endpoint: Endpoint,
        #[source]
        /// The I/O error.
        source: Arc<io::Error>,
    },
    /// vpcd closed the connection in the middle of a frame.
    #[error("{endpoint}: truncated frame: connection closed after {got} of {expected} bytes")]
    Truncated {
        /// The card's endpoint.
        endpoint: Endpoint,
        /// Bytes received.
        got: usize,
        /// Bytes the frame announced.
        expected: usize,
    },
    /// A frame with a zero length (an empty C-APDU), answered `67 00`.
    #[error("{endpoint}: malformed frame: zero length (answered 6700)")]
    EmptyFrame {
        /// The card's endpoint.
        endpoint: Endpoint,
    },
    /// A 1-byte payload that is none of the known control messages (ignored).
    #[error("{endpoint}: unknown control message {byte:02X} (ignored)")]
    UnknownControl {
        /// The card's endpoint.
        endpoint: Endpoint,
        /// The control byte.
        byte: u8,
    },
    /// The card's reply does not fit a frame (more than [`MAX_PAYLOAD`] bytes).
    #[error(
        "{endpoint}: the card's reply of {len} bytes does not fit a vpcd frame (at most 65535)"
    )]
    ReplyTooLong {
        /// The card's endpoint.
        endpoint: Endpoint,
        /// Length of the reply in bytes.
        len: usize,
    },
    /// The card went mute; it is no longer served.
    #[error("{endpoint}: the card went mute (it will not answer again; a file-backed card's state file holds its last committed state); no longer served")]
    CardMute {
        /// The card's endpoint.
        endpoint: Endpoint,
    },
    /// A card's thread could not be started.
    #[error("card {index}: start the card's thread: {source}")]
    Spawn {
        /// The card's position in the list given to [`serve`].
        index: usize,
        #[source]
        /// The I/O error.
        source: Arc<io::Error>,
    },
    /// A card's thread panicked.
    #[error("card {index}: the card's thread panicked")]
    Panicked {
        /// The card's position in the list given to [`serve`].
        index: usize,
    },
    /// Cards that stopped with an error (the others, if any, stopped on shutdown).
    #[error("{}", failed_summary(.0))]
    Failed(Vec<(usize, BridgeError)>),
}

fn failed_summary(failures: &[(usize, BridgeError)]) -> String {
    let mut s = format!("{} card(s) stopped with an error", failures.len());
    for (index, e) in failures {
        s.push_str(&format!("; card {index}: {e}"));
    }
    s
}

type Events<'a> = &'a Mutex<dyn FnMut(BridgeEvent) + Send + 'a>;

/// What a card thread shares with the others.
struct Ctx<'a> {
    index: usize,
    shutdown: &'a AtomicBool,
    events: Events<'a>,
}

impl Ctx<'_> {
    fn emit(&self, event: BridgeEvent) {
        // A callback that panicked once must not silence the other cards.
        let mut f = self.events.lock().unwrap_or_else(|p| p.into_inner());
        (*f)(event);
    }

    /// Reports the first failure of a series as [`BridgeEvent::Waiting`].
    fn wait_report(&self, reported: &mut bool, error: BridgeError) {
        if !*reported {
            *reported = true;
            self.emit(BridgeEvent::Waiting {
                index: self.index,
                error,
            });
        }
    }

    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Sleeps `d` in slices of at most [`POLL_INTERVAL`]; false when shutdown was set.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            thread::sleep((end - now).min(POLL_INTERVAL));
        }
    }
}

enum Source {
    Connect(SocketAddr),
    Listen(TcpListener, SocketAddr),
}

/// Serves each card on its endpoint, one thread per card, until `shutdown` is
/// set or every card has stopped with an error.
///
/// Listeners of [`Endpoint::Listen`] cards are bound before any thread starts:
/// a bind failure (or a non-loopback address) is returned at once and nothing
/// is served. `events` is called (from the card threads and the calling
/// thread, one call at a time) for everything in [`BridgeEvent`],
/// [`BridgeEvent::Stopped`] last.
///
/// Returns `Ok(())` when every card stopped because of `shutdown`, and
/// [`BridgeError::Failed`] listing the cards that stopped with an error
/// otherwise (a mute card, or a connect error that retrying cannot cure such
/// as an unusable address). Refused connects, lost connections, malformed
/// frames and failed accepts are not errors: the bridge reports them and
/// connects (or accepts) again.
pub fn serve<F>(
    cards: Vec<(Box<dyn VirtualCard>, Endpoint)>,
    shutdown: Arc<AtomicBool>,
    events: F,
) -> Result<(), BridgeError>
where
    F: FnMut(BridgeEvent) + Send,
{
    if cards.is_empty() {
        return Err(BridgeError::NoCards);
    }
    let events = Mutex::new(events);
    let events: Events<'_> = &events;
    let mut prepared = Vec::with_capacity(cards.len());
    for (index, (card, endpoint)) in cards.into_iter().enumerate() {
        let source = match endpoint {
            Endpoint::Connect(addr) => Source::Connect(addr),
            Endpoint::Listen(addr) => {
                let (listener, local) = bind(addr)?;
                Source::Listen(listener, local)
            }
        };
        prepared.push((index, card, endpoint, source));
    }
    for (index, _, _, source) in &prepared {
        if let Source::Listen(_, addr) = source {
            let mut f = events.lock().unwrap_or_else(|p| p.into_inner());
            (*f)(BridgeEvent::Listening {
                index: *index,
                addr: *addr,
            });
        }
    }

    let shutdown: &AtomicBool = &shutdown;
    let failures = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(prepared.len());
        for (index, mut card, endpoint, source) in prepared {
            let ctx = Ctx {
                index,
                shutdown,
                events,
            };
            let handle = thread::Builder::new()
                .name(format!("vpcd-card-{index}"))
                .spawn_scoped(scope, move || {
                    let result = match source {
                        Source::Connect(addr) => run_connect(&ctx, card.as_mut(), endpoint, addr),
                        Source::Listen(listener, _) => {
                            run_listen(&ctx, card.as_mut(), endpoint, &listener)
                        }
                    };
                    if let Err(e) = &result {
                        ctx.emit(BridgeEvent::CardStopped {
                            index,
                            error: e.clone(),
                        });
                    }
                    result
                });
            handles.push((index, handle));
        }
        let mut failures = Vec::new();
        for (index, handle) in handles {
            match handle {
                Ok(h) => match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push((index, e)),
                    Err(_) => failures.push((index, BridgeError::Panicked { index })),
                },
                Err(e) => failures.push((
                    index,
                    BridgeError::Spawn {
                        index,
                        source: Arc::new(e),
                    },
                )),
            }
        }
        failures
    });
    {
        let mut f = events.lock().unwrap_or_else(|p| p.into_inner());
        (*f)(BridgeEvent::Stopped);
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(BridgeError::Failed(failures))
    }
}

fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BridgeError> {
    if !addr.ip().is_loopback() {
        return Err(BridgeError::NotLoopback(addr));
    }
    let err = |e: io::Error| BridgeError::Bind {
        addr,
        source: Arc::new(e),
    };
    let listener = TcpListener::bind(addr).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    // Linux's accept() honours SO_RCVTIMEO: it returns EAGAIN after the timeout,
    // so the thread looks at the shutdown flag without polling. Elsewhere the
    // listener is non-blocking and accept is retried every few milliseconds.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    SockRef::from(&listener)
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(err)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    listener.set_nonblocking(true).map_err(err)?;
    Ok((listener, local))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Connect errors that retrying will not cure.
fn is_permanent_connect_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::Unsupported
    )
}

fn run_connect(
    ctx: &Ctx<'_>,
    card: &mut dyn VirtualCard,
    endpoint: Endpoint,
    addr: SocketAddr,
) -> Result<(), BridgeError> {
    let mut backoff = BACKOFF_MIN;
    let mut reported = false;
    loop {
        if ctx.stopping() {
            return Ok(());
        }
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => match session(ctx, card, endpoint, stream)? {
                // A card that was seen tries again at once (pcscd restarting).
                Attempt::Attached => {
                    reported = false;
                    backoff = BACKOFF_MIN;
                }
                // Connected, but vpcd said nothing: e.g. the backlog of a
                // pcscd that was exiting. Counts as a failed attempt.
                Attempt::Silent(error) => {
                    if let Some(error) = error {
                        ctx.wait_report(&mut reported, error);
                    }
                    if !ctx.sleep(backoff) {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            },
            Err(e) => {
                let permanent = is_permanent_connect_error(&e);
                let error = BridgeError::Connect {
                    addr,
                    source: Arc::new(e),
                };
                if permanent {
                    return Err(error);
                }
                ctx.wait_report(&mut reported, error);
                if !ctx.sleep(backoff) {
                    return Ok(());
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn run_listen(
    ctx: &Ctx<'_>,
    card: &mut dyn VirtualCard,
    endpoint: Endpoint,
    listener: &TcpListener,
) -> Result<(), BridgeError> {
    let addr = listener.local_addr().unwrap_or_else(|_| endpoint.addr());
    let mut reported = false;
    loop {
        if ctx.stopping() {
            return Ok(());
        }
        match listener.accept() {
            Ok((stream, _)) => match session(ctx, card, endpoint, stream)? {
                Attempt::Attached => reported = false,
                Attempt::Silent(error) => {
                    if let Some(error) = error {
                        ctx.wait_report(&mut reported, error);
                    }
                }
            },
            Err(e) if is_timeout(&e) =>
            {
                #[cfg(not(any(target_os = "linux", target_os = "android")))]
                if !ctx.sleep(Duration::from_millis(10)) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // ECONNABORTED, EMFILE...: report once, retry after a pause.
                let error = BridgeError::Accept {
                    addr,
                    source: Arc::new(e),
                };
                ctx.wait_report(&mut reported, error);
                if !ctx.sleep(BACKOFF_MAX) {
                    return Ok(());
                }
            }
        }
    }
}

/// Sets the connection's socket options.
fn configure(stream: &TcpStream, endpoint: Endpoint) -> Result<(), BridgeError> {
    let err = |what: &'static str| {
        move |e: io::Error| BridgeError::Socket {
            endpoint,
            what,
            source: Arc::new(e),
        }
    };
    // An accepted socket may inherit the listener's non-blocking mode.
    stream
        .set_nonblocking(false)
        .map_err(err("clear O_NONBLOCK"))?;
    stream.set_nodelay(true).map_err(err("set TCP_NODELAY"))?;
    stream
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(err("set the read timeout"))?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(err("set the write timeout"))?;
    set_quickack(stream).map_err(err("set TCP_QUICKACK"))?;
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_quickack(stream: &TcpStream) -> io::Result<()> {
    SockRef::from(stream).set_quickack(true)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_quickack(_stream: &TcpStream) -> io::Result<()> {
    Ok(())
}

fn socket_options(stream: &TcpStream) -> SocketOptions {
    let sock = SockRef::from(stream);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let quickack = sock.quickack().ok();
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let quickack = None;
    SocketOptions {
        nodelay: sock.nodelay().unwrap_or(false),
        quickack,
    }
}

/// How reading the next frame ended when it yielded none.
enum ReadEnd {
    Closed,
    Shutdown,
    Error(BridgeError),
}

/// Frames from one connection; partial frames survive read timeouts.
struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// The buffer held command APDUs (PIN blocks, keys): wiped when the connection ends.
impl Drop for FrameReader {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf[..]);
    }
}

impl FrameReader {
    fn new() -> Self {
        FrameReader {
            buf: vec![0u8; 2 + MAX_PAYLOAD].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// The next frame's payload. Checks the shutdown flag first, and again at
    /// every read timeout.
    fn next(
        &mut self,
        stream: &mut TcpStream,
        ctx: &Ctx<'_>,
        endpoint: Endpoint,
    ) -> Result<&[u8], ReadEnd> {
        if ctx.stopping() {
            return Err(ReadEnd::Shutdown);
        }
        loop {
            let avail = self.end - self.start;
            let need = if avail >= 2 {
                let len = usize::from(u16::from_be_bytes([
                    self.buf[self.start],
                    self.buf[self.start + 1],
                ]));
                if avail >= 2 + len {
                    let payload = self.start + 2;
                    self.start = payload + len;
                    return Ok(&self.buf[payload..payload + len]);
                }
                2 + len
            } else {
                2
            };
            // Make room: a whole frame always fits the buffer.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match stream.read(&mut self.buf[self.end..]) {
                Ok(0) if avail == 0 => return Err(ReadEnd::Closed),
                Ok(0) => {
                    return Err(ReadEnd::Error(BridgeError::Truncated {
                        endpoint,
                        got: avail,
                        expected: need,
                    }))
                }
                Ok(n) => {
                    self.end += n;
                    // Linux clears TCP_QUICKACK as it goes: re-arm it after every
                    // read, or vpcd's next message waits for a delayed ACK. A
                    // failure costs latency only.
                    let _ = set_quickack(stream);
                }
                Err(e) if is_timeout(&e) => {
                    if ctx.stopping() {
                        return Err(ReadEnd::Shutdown);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ReadEnd::Error(BridgeError::Read {
                        endpoint,
                        source: Arc::new(e),
                    }))
                }
            }
        }
    }
}

/// How a connection that did not stop the card ended.
enum Attempt {
    /// vpcd talked to the card (Attached and Detached were emitted).
    Attached,
    /// vpcd never sent a frame; the error, if the connection failed.
    Silent(Option<BridgeError>),
}

/// Serves one connection until it ends. `Err` only for errors that stop the
/// card (mute).
fn session(
    ctx: &Ctx<'_>,
    card: &mut dyn VirtualCard,
    endpoint: Endpoint,
    mut stream: TcpStream,
) -> Result<Attempt, BridgeError> {
    let mut attached = false;
    let end = match configure(&stream, endpoint) {
        Ok(()) => serve_frames(ctx, card, endpoint, &mut stream, &mut attached),
        Err(e) => ReadEnd::Error(e),
    };
    // Closing the socket is what vpcd sees as the card's removal.
    drop(stream);
    card.power(Power::Off);
    if !attached {
        // (A card can only go mute after the first frame.)
        return Ok(Attempt::Silent(match end {
            ReadEnd::Error(e) => Some(e),
            ReadEnd::Closed | ReadEnd::Shutdown => None,
        }));
    }
    let stop = match &end {
        ReadEnd::Error(e @ BridgeError::CardMute { .. }) => Some(e.clone()),
        _ => None,
    };
    let reason = match end {
        ReadEnd::Closed => DetachReason::Closed,
        ReadEnd::Shutdown => DetachReason::Shutdown,
        ReadEnd::Error(e) => DetachReason::Error(e),
    };
    ctx.emit(BridgeEvent::Detached {
        index: ctx.index,
        endpoint,
        reason,
    });
    match stop {
        Some(e) => Err(e),
        None => Ok(Attempt::Attached),
    }
}

fn serve_frames(
    ctx: &Ctx<'_>,
    card: &mut dyn VirtualCard,
    endpoint: Endpoint,
    stream: &mut TcpStream,
    attached: &mut bool,
) -> ReadEnd {
    let mut reader = FrameReader::new();
    let mut out = Vec::with_capacity(2 + 258);
    loop {
        let frame = match reader.next(stream, ctx, endpoint) {
            Ok(frame) => frame,
            Err(end) => return end,
        };
        if !*attached {
            *attached = true;
            ctx.emit(BridgeEvent::Attached {
                index: ctx.index,
                endpoint,
                peer: stream.peer_addr().unwrap_or_else(|_| endpoint.addr()),
                socket: socket_options(stream),
            });
        }
        let reply = match *frame {
            [control::POWER_OFF] => {
                card.power(Power::Off);
                None
            }
            [control::POWER_ON] => {
                card.power(Power::On);
                None
            }
            [control::RESET] => {
                card.power(Power::Reset);
                None
            }
            [control::GET_ATR] => Some(card.atr()),
            [] => {
                // An empty C-APDU: wrong length, and nothing for the card.
                ctx.emit(BridgeEvent::Ignored {
                    index: ctx.index,
                    error: BridgeError::EmptyFrame { endpoint },
                });
                Some(<[u8; 2]>::from(Status::WrongLength).to_vec())
            }
            [byte] => {
                ctx.emit(BridgeEvent::Ignored {
                    index: ctx.index,
                    error: BridgeError::UnknownControl { endpoint, byte },
                });
                None
            }
            ref apdu => match card.transmit(apdu) {
                Some(rsp) if !rsp.is_empty() => Some(rsp),
                // An empty reply would be an empty frame: treated as mute too.
                _ => return ReadEnd::Error(BridgeError::CardMute { endpoint }),
            },
        };
        let Some(reply) = reply else { continue };
        let Ok(len) = u16::try_from(reply.len()) else {
            return ReadEnd::Error(BridgeError::ReplyTooLong {
                endpoint,
                len: reply.len(),
            });
        };
        out.clear();
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        if let Err(e) = stream.write_all(&out) {
            return ReadEnd::Error(BridgeError::Write {
                endpoint,
                source: Arc::new(e),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_with_latency_answers_the_same_and_never_sooner() {
        let latency = Duration::from_millis(20);
        let mut card = WithLatency::new(EchoCard, latency);
        assert_eq!(card.atr(), EchoCard.atr());
        let started = Instant::now();
        let rsp = card.transmit(&[0x00, 0x10, 0x00, 0x00, 0x01, 0xAB]);
        // A lower bound only: sleeping never ends early, whatever the machine's speed.
        assert!(started.elapsed() >= latency);
        assert_eq!(
            rsp,
            EchoCard.transmit(&[0x00, 0x10, 0x00, 0x00, 0x01, 0xAB])
        );
    }
}
