//! The PC/SC transport (pcsc-lite on Linux, through the `pcsc` crate).
//!
//! - [`PcscContext`]: a connection to the PC/SC service — list readers, watch
//!   reader and card events, connect to a card;
//! - [`PcscCard`]: a [`Transport`] over one card, in shared mode (T=1 or T=0).
//!
//! # Exclusive access
//!
//! [`PcscCard::exclusive`](Transport::exclusive) wraps the body in a PC/SC
//! transaction (`SCardBeginTransaction` … `SCardEndTransaction`, leaving the
//! card as it is). The `pcsc` crate's `Transaction` borrows the card, so the
//! body gets a short-lived transport that sends through the transaction; this
//! is why the trait has a scoped `exclusive` instead of `begin`/`end`.
//!
//! # Recovery
//!
//! - `SCARD_W_RESET_CARD` (another application or the reader reset the card):
//!   the handle is reconnected (`SCardReconnect`, leave card) and the call
//!   reports [`TransportError::CardReset`]; the session selects again.
//! - `SCARD_E_NO_SERVICE`, `SCARD_E_SERVICE_STOPPED`, `SCARD_E_INVALID_HANDLE`,
//!   `SCARD_F_COMM_ERROR` (pcscd stopped or restarted): the old context never
//!   recovers, so a new one is established and the card reconnected. Right
//!   after the loss this is retried for up to 3 s ([`DEFAULT_RECOVERY_WAIT`],
//!   see [`PcscCard::set_recovery_wait`]) to ride over a restart, including
//!   the ~0.4 s a vpcd card needs to come back; success is reported as
//!   `CardReset`, so the session selects again and retries reads. If pcscd is
//!   still down the call reports `NoService`, and every later call tries a new
//!   context once (without waiting) until pcscd is back.
//! - `SCARD_W_REMOVED_CARD`: reported as [`TransportError::CardRemoved`];
//!   later calls report `NoCard` until a card is back, then `CardReset` (the
//!   session checks that it is the same card by its card ID).
//! - `SCARD_E_NOT_TRANSACTED`: vpcd answers this while a card is going away;
//!   reported as `Other`, and the session forgets the card's state.
//!
//! Measured on pcsc-lite 1.9.9 with `.ci/pcsc-env` (a session reading a
//! challenge every 100 ms): across `pcsc-env restart` no operation failed;
//! across `stop`, 5 s, `start`, operations failed with `NoService` while
//! pcscd was down and succeeded again as soon as it was back.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use crate::transport::{ReaderEvent, ReaderInfo, Transport, TransportError};

/// The socket pcsc-lite uses when `PCSCLITE_CSOCK_NAME` is not set.
pub const DEFAULT_SOCKET: &str = "/run/pcscd/pcscd.comm";

/// How often the reader list is polled when the PC/SC service does not
/// support reader hot-plug notifications.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long a card keeps trying to reconnect after the service was lost.
pub const DEFAULT_RECOVERY_WAIT: Duration = Duration::from_secs(3);
/// Pause between reconnection attempts.
const RECOVERY_POLL: Duration = Duration::from_millis(100);

/// Most context re-establishments within one `wait_for_change`.
const MAX_RESTARTS: u32 = 3;

/// pcsc-lite's `PCSCLITE_MAX_READERS_CONTEXTS`: most reader states per call.
const MAX_READER_STATES: usize = 16;

/// Longest short APDU: a 4-byte header, a 1-byte Lc, 255 bytes of data and a
/// 1-byte Le make 261.
const SHORT_APDU_MAX: u32 = 261;

/// The socket the PC/SC client library talks to.
pub fn socket_path() -> String {
    std::env::var("PCSCLITE_CSOCK_NAME").unwrap_or_else(|_| DEFAULT_SOCKET.to_string())
}

/// Whether a PC/SC error means the daemon went away (stopped or restarted).
/// A call blocked in the daemon when it exits gets `SCARD_F_COMM_ERROR`; later
/// calls on the old context get `SCARD_E_NO_SERVICE` (measured, pcsc-lite 1.9.9).
fn service_lost(e: pcsc::Error) -> bool {
    matches!(
        e,
        pcsc::Error::NoService
            | pcsc::Error::ServiceStopped
            | pcsc::Error::InvalidHandle
            | pcsc::Error::CommError
    )
}

/// Maps a PC/SC error to a typed transport error.
fn map_error(e: pcsc::Error, reader: &str) -> TransportError {
    use pcsc::Error as E;
    match e {
        E::NoService | E::ServiceStopped => TransportError::NoService {
            socket: socket_path(),
        },
        E::NoReadersAvailable | E::UnknownReader | E::ReaderUnavailable => {
            TransportError::NoReader {
                pattern: (!reader.is_empty()).then(|| reader.to_string()),
                available: Vec::new(),
            }
        }
        E::NoSmartcard => TransportError::NoCard {
            reader: reader.to_string(),
        },
        E::RemovedCard => TransportError::CardRemoved,
        E::ResetCard => TransportError::CardReset,
        E::SharingViolation => TransportError::SharingViolation,
        E::Timeout => TransportError::Timeout,
        E::Cancelled => TransportError::Cancelled,
        E::UnresponsiveCard | E::UnpoweredCard => TransportError::Unresponsive {
            reader: reader.to_string(),
        },
        E::NotTransacted => TransportError::NotTransacted {
            reader: reader.to_string(),
        },
        source => TransportError::Pcsc { source },
    }
}

fn establish() -> Result<Context, TransportError> {
    Context::establish(Scope::User).map_err(|e| map_error(e, ""))
}

fn c_name(reader: &str) -> Result<CString, TransportError> {
    CString::new(reader).map_err(|_| TransportError::NoReader {
        pattern: Some(reader.escape_debug().to_string()),
        available: Vec::new(),
    })
}

fn reader_names(ctx: &Context) -> Result<Vec<CString>, pcsc::Error> {
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The states of the named readers, without waiting.
fn reader_states(ctx: &Context, names: Vec<CString>) -> Result<Vec<ReaderState>, pcsc::Error> {
    let mut states: Vec<ReaderState> = names
        .into_iter()
        .map(|n| ReaderState::new(n, State::UNAWARE))
        .collect();
    if states.is_empty() {
        return Ok(states);
    }
    match ctx.get_status_change(Duration::ZERO, &mut states) {
        Ok(()) | Err(pcsc::Error::Timeout) => Ok(states),
        Err(e) => Err(e),
    }
}

/// What a monitor last saw in one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    present: bool,
    atr: Vec<u8>,
    /// pcsc-lite's insertion/removal counter of the reader.
    count: u32,
}

fn seen(rs: &ReaderState) -> Option<Seen> {
    let state = rs.event_state();
    if state.intersects(State::UNKNOWN | State::IGNORE | State::UNAVAILABLE) {
        return None;
    }
    let present = state.contains(State::PRESENT);
    Some(Seen {
        present,
        atr: if present {
            rs.atr().to_vec()
        } else {
            Vec::new()
        },
        count: rs.event_count(),
    })
}

/// The events that lead from `old` to `new`.
fn diff(old: &BTreeMap<String, Seen>, new: &BTreeMap<String, Seen>) -> Vec<ReaderEvent> {
    let mut events = Vec::new();
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        events.push(ReaderEvent::ReaderRemoved(name.clone()));
    }
    for (name, now) in new {
        let inserted = || ReaderEvent::CardInserted {
            reader: name.clone(),
            atr: now.atr.clone(),
        };
        let removed = || ReaderEvent::CardRemoved {
            reader: name.clone(),
        };
        match old.get(name) {
            None => {
                events.push(ReaderEvent::ReaderAdded(name.clone()));
                if now.present {
                    events.push(inserted());
                }
            }
            Some(before) => match (before.present, now.present) {
                (false, true) => events.push(inserted()),
                (true, false) => events.push(removed()),
                (true, true) if before.count != now.count || before.atr != now.atr => {
                    events.push(removed());
                    events.push(inserted());
                }
                _ => {}
            },
        }
    }
    events
}

/// Whether the PC/SC service reports reader arrivals and departures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pnp {
    Unknown,
    Supported,
    Unsupported,
}

/// A connection to the PC/SC service.
///
/// Methods that talk to the service re-establish the connection once when the
/// daemon has restarted, so a long-lived `PcscContext` survives pcscd restarts.
pub struct PcscContext {
    ctx: Context,
    /// Reader states being watched by [`wait_for_change`](Self::wait_for_change);
    /// the hot-plug pseudo-reader first when supported.
    watch: Vec<ReaderState>,
    /// What was last reported (or seen at establishment).
    known: BTreeMap<String, Seen>,
    pnp: Pnp,
}

impl std::fmt::Debug for PcscContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscContext")
            .field("readers", &self.known.keys().collect::<Vec<_>>())
            .field("pnp", &self.pnp)
            .finish()
    }
}

impl PcscContext {
    /// Connects to the PC/SC service (`SCardEstablishContext`).
    ///
    /// Fails with [`TransportError::NoService`] when no pcscd answers on the
    /// socket (`PCSCLITE_CSOCK_NAME`, default [`DEFAULT_SOCKET`]).
    pub fn establish() -> Result<PcscContext, TransportError> {
        let mut ctx = PcscContext {
            ctx: establish()?,
            watch: Vec::new(),
            known: BTreeMap::new(),
            pnp: Pnp::Unknown,
        };
        ctx.known = ctx.snapshot()?.1;
        Ok(ctx)
    }

    /// Replaces the service connection by a new one (after a pcscd restart).
    pub fn reestablish(&mut self) -> Result<(), TransportError> {
        tracing::info!("re-establishing the PC/SC context");
        self.watch.clear();
        self.ctx = establish()?;
        Ok(())
    }

    /// Runs `op` on the context, re-establishing it once if the service was lost.
    fn with_ctx<R>(
        &mut self,
        op: impl Fn(&Context) -> Result<R, pcsc::Error>,
    ) -> Result<R, pcsc::Error> {
        match op(&self.ctx) {
            Err(e) if service_lost(e) => {
                self.reestablish().map_err(|_| e)?;
                op(&self.ctx)
            }
            other => other,
        }
    }

    fn snapshot(&mut self) -> Result<(Vec<ReaderInfo>, BTreeMap<String, Seen>), TransportError> {
        let states = self
            .with_ctx(|ctx| reader_states(ctx, reader_names(ctx)?))
            .map_err(|e| map_error(e, ""))?;
        let mut infos = Vec::new();
        let mut map = BTreeMap::new();
        for rs in &states {
            let Some(s) = seen(rs) else { continue };
            let name = rs.name().to_string_lossy().into_owned();
            infos.push(ReaderInfo {
                name: name.clone(),
                card_present: s.present,
                atr: (s.present && !s.atr.is_empty()).then(|| s.atr.clone()),
            });
            map.insert(name, s);
        }
        Ok((infos, map))
    }

    /// The readers and whether each holds a card (with its ATR).
    pub fn list_readers(&mut self) -> Result<Vec<ReaderInfo>, TransportError> {
        Ok(self.snapshot()?.0)
    }

    /// Waits until a reader appears or disappears, or a card is inserted or
    /// removed, and returns what changed since the previous call (or since
    /// [`establish`](Self::establish) for the first call).
    ///
    /// Returns an empty list when `timeout` (`None`: wait forever) expires.
    /// Reader hot-plug uses the `\\?PnP?\Notification` pseudo-reader; when the
    /// service does not support it the reader list is polled every 500 ms.
    /// After a pcscd restart the context is re-established and the differences
    /// are reported as events.
    pub fn wait_for_change(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Vec<ReaderEvent>, TransportError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut restarts = 0;
        loop {
            let names = match reader_names(&self.ctx) {
                Ok(n) => n,
                Err(e) if service_lost(e) && restarts < MAX_RESTARTS => {
                    restarts += 1;
                    self.recover_service(deadline)?;
                    continue;
                }
                Err(e) => return Err(map_error(e, "")),
            };
            self.rebuild_watch(names);

            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let watching_pnp = self
                .watch
                .iter()
                .any(|rs| rs.name() == pcsc::PNP_NOTIFICATION());
            let wait = match (watching_pnp, remaining) {
                (false, Some(r)) => Some(r.min(POLL_INTERVAL)),
                (false, None) => Some(POLL_INTERVAL),
                (true, r) => r,
            };
            if self.watch.is_empty() {
                std::thread::sleep(wait.unwrap_or(POLL_INTERVAL));
            } else {
                match self.ctx.get_status_change(wait, &mut self.watch) {
                    Ok(()) | Err(pcsc::Error::Timeout) => {}
                    // A reader vanished between listing and waiting.
                    Err(pcsc::Error::UnknownReader) => self.watch.clear(),
                    Err(e) if service_lost(e) && restarts < MAX_RESTARTS => {
                        restarts += 1;
                        self.recover_service(deadline)?;
                        continue;
                    }
                    Err(e) => return Err(map_error(e, "")),
                }
            }

            let events = self.collect_events();
            if !events.is_empty() {
                return Ok(events);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Vec::new());
            }
        }
    }

    /// Re-establishes the context after the service was lost, retrying until
    /// `deadline` but for at least [`DEFAULT_RECOVERY_WAIT`] (a pcscd restart
    /// takes a fraction of a second).
    fn recover_service(&mut self, deadline: Option<Instant>) -> Result<(), TransportError> {
        let floor = Instant::now() + DEFAULT_RECOVERY_WAIT;
        let until = deadline.map_or(floor, |d| d.max(floor));
        loop {
            match self.reestablish() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < until => {
                    tracing::debug!(error = %e, "PC/SC service still unavailable");
                    std::thread::sleep(RECOVERY_POLL);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps the watch list in step with the reader list: drops readers that
    /// are gone, adds new ones (unaware, so the next wait returns at once with
    /// their state), keeps the hot-plug pseudo-reader first when supported.
    fn rebuild_watch(&mut self, names: Vec<CString>) {
        let pnp_name = pcsc::PNP_NOTIFICATION();
        self.watch
            .retain(|rs| rs.name() == pnp_name || names.iter().any(|n| n.as_c_str() == rs.name()));
        // pcsc-lite refuses more than PCSCLITE_MAX_READERS_CONTEXTS states in
        // one call: with that many readers, poll instead of watching hot-plug.
        let pnp_fits = names.len() < MAX_READER_STATES;
        if !pnp_fits {
            self.watch.retain(|rs| rs.name() != pnp_name);
        }
        if pnp_fits
            && self.pnp != Pnp::Unsupported
            && !self.watch.iter().any(|rs| rs.name() == pnp_name)
        {
            // The reader count sits in the upper 16 bits of the current state.
            let state = State::from_bits_retain(((names.len() as u32) << 16).into());
            self.watch.insert(0, ReaderState::new(pnp_name, state));
        }
        for n in names {
            if !self.watch.iter().any(|rs| rs.name() == n.as_c_str()) {
                self.watch.push(ReaderState::new(n, State::UNAWARE));
            }
        }
    }

    fn collect_events(&mut self) -> Vec<ReaderEvent> {
        let pnp_name = pcsc::PNP_NOTIFICATION();
        let mut now = BTreeMap::new();
        for rs in &mut self.watch {
            if rs.name() == pnp_name {
                if rs.event_state().contains(State::UNKNOWN) {
                    self.pnp = Pnp::Unsupported;
                } else if self.pnp == Pnp::Unknown && rs.event_state() != State::UNAWARE {
                    self.pnp = Pnp::Supported;
                }
            } else if let Some(s) = seen(rs) {
                now.insert(rs.name().to_string_lossy().into_owned(), s);
            }
            rs.sync_current_state();
        }
        if self.pnp == Pnp::Unsupported {
            self.watch.retain(|rs| rs.name() != pnp_name);
        }
        let events = diff(&self.known, &now);
        self.known = now;
        events
    }

    /// Connects to the card in `reader` (shared mode, T=1 or T=0).
    ///
    /// Errors: `NoReader` (with the available readers), `NoCard`,
    /// `SharingViolation` (another application holds the card exclusively),
    /// `NoService`.
    pub fn connect(&mut self, reader: &str) -> Result<PcscCard, TransportError> {
        let name = c_name(reader)?;
        match self.with_ctx(|ctx| ctx.connect(&name, ShareMode::Shared, PROTOCOLS)) {
            Ok(card) => Ok(PcscCard::new(
                self.ctx.clone(),
                card,
                reader.to_string(),
                name,
            )),
            Err(e) => Err(self.with_readers(map_error(e, reader))),
        }
    }

    /// Fills in the available readers of a `NoReader` error.
    fn with_readers(&self, err: TransportError) -> TransportError {
        match err {
            TransportError::NoReader { pattern, available } if available.is_empty() => {
                TransportError::NoReader {
                    pattern,
                    available: reader_names(&self.ctx)
                        .unwrap_or_default()
                        .iter()
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect(),
                }
            }
            other => other,
        }
    }
}

/// The protocols a card may use.
const PROTOCOLS: Protocols = Protocols::T0.union(Protocols::T1);

/// A [`Transport`] over one card in one PC/SC reader (shared mode).
pub struct PcscCard {
    ctx: Context,
    /// `None` after the card was removed or the service was lost.
    card: Option<pcsc::Card>,
    reader: String,
    reader_c: CString,
    atr: Vec<u8>,
    extended: bool,
    extended_override: Option<bool>,
    recovery_wait: Duration,
    /// The context is dead (pcscd stopped or restarted): establish a new one.
    service_lost: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PcscCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscCard")
            .field("reader", &self.reader)
            .field("connected", &self.card.is_some())
            .field("atr", &hex::encode_upper(&self.atr))
            .field("extended", &self.supports_extended())
            .finish()
    }
}

impl PcscCard {
    fn new(ctx: Context, card: pcsc::Card, reader: String, reader_c: CString) -> PcscCard {
        let mut this = PcscCard {
            ctx,
            card: Some(card),
            reader,
            reader_c,
            atr: Vec::new(),
            extended: false,
            extended_override: None,
            recovery_wait: DEFAULT_RECOVERY_WAIT,
            service_lost: false,
            buf: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        };
        this.refresh_card_info();
        this
    }

    /// Forces extended-length APDUs on or off, whatever the reader reports.
    ///
    /// By default extended length is used when the reader driver reports a
    /// maximum APDU size (`SCARD_ATTR_MAXINPUT`, as the CCID driver does)
    /// beyond the short form, or, when the driver does not report it (vpcd),
    /// when the card runs T=1. Otherwise the session uses short APDUs with
    /// command chaining, which every reader carries.
    pub fn set_extended(&mut self, extended: Option<bool>) {
        self.extended_override = extended;
    }

    /// How long to keep trying to reconnect after the PC/SC service was lost
    /// (pcscd restarting, the card coming back to its reader); default 3 s.
    /// Zero tries once.
    pub fn set_recovery_wait(&mut self, wait: Duration) {
        self.recovery_wait = wait;
    }

    /// Reads the ATR and the reader's maximum APDU size after (re)connecting.
    fn refresh_card_info(&mut self) {
        let Some(card) = &self.card else { return };
        self.atr = card
            .get_attribute_owned(pcsc::Attribute::AtrString)
            .or_else(|_| card.status2_owned().map(|s| s.atr().to_vec()))
            .unwrap_or_default();
        let max_input = card
            .get_attribute_owned(pcsc::Attribute::Maxinput)
            .ok()
            .and_then(|v| v.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()))
            .map(u32::from_le_bytes);
        let t1 = card.status2_owned().ok().and_then(|s| s.protocol2()) == Some(pcsc::Protocol::T1);
        self.extended = match max_input {
            Some(max) => max > SHORT_APDU_MAX,
            // Not reported (vpcd): APDU-level T=1 links carry extended APDUs;
            // T=0 would need ENVELOPE.
            None => t1,
        };
        tracing::debug!(
            reader = %self.reader,
            atr = %hex::encode_upper(&self.atr),
            extended = self.extended,
            "connected"
        );
    }

    /// Connects again from scratch, on a new context when the service was
    /// lost. With `wait_for_service` (right after a loss was detected) a
    /// missing service is retried for up to the recovery wait, riding over a
    /// pcscd restart; once a new context is up, a card that is not back in
    /// its reader yet is waited for within the same bound.
    fn reconnect_fresh(&mut self, wait_for_service: bool) -> Result<(), TransportError> {
        self.card = None;
        let deadline = Instant::now() + self.recovery_wait;
        let mut fresh = false;
        loop {
            if self.service_lost {
                match Context::establish(Scope::User) {
                    Ok(ctx) => {
                        self.ctx = ctx;
                        self.service_lost = false;
                        fresh = true;
                    }
                    Err(e) if service_lost(e) && wait_for_service && Instant::now() < deadline => {
                        std::thread::sleep(RECOVERY_POLL);
                        continue;
                    }
                    Err(e) => return Err(map_error(e, &self.reader)),
                }
            }
            match self
                .ctx
                .connect(&self.reader_c, ShareMode::Shared, PROTOCOLS)
            {
                Ok(card) => {
                    self.card = Some(card);
                    self.refresh_card_info();
                    return Ok(());
                }
                // The old context never recovers from a daemon restart: try a new one.
                Err(e) if service_lost(e) && !fresh => self.service_lost = true,
                // After a restart the card reconnects to vpcd/pcscd a little later.
                Err(
                    pcsc::Error::NoSmartcard
                    | pcsc::Error::UnknownReader
                    | pcsc::Error::ReaderUnavailable
                    | pcsc::Error::NoReadersAvailable,
                ) if fresh && Instant::now() < deadline => std::thread::sleep(RECOVERY_POLL),
                Err(e) => {
                    if service_lost(e) {
                        self.service_lost = true;
                    }
                    return Err(map_error(e, &self.reader));
                }
            }
        }
    }

    /// Connects when the card handle was lost; a successful reconnection is
    /// reported as `CardReset` (the card's state is gone).
    fn ensure_connected(&mut self) -> Result<(), TransportError> {
        if self.card.is_some() {
            return Ok(());
        }
        tracing::info!(reader = %self.reader, "reconnecting to the card");
        self.reconnect_fresh(false)?;
        Err(TransportError::CardReset)
    }

    /// Turns a PC/SC error into the error to report, recovering what can be.
    fn recover(&mut self, e: pcsc::Error) -> TransportError {
        match e {
            pcsc::Error::ResetCard => {
                let Some(card) = &mut self.card else {
                    return TransportError::CardReset;
                };
                match card.reconnect(ShareMode::Shared, PROTOCOLS, Disposition::LeaveCard) {
                    Ok(()) => {
                        self.refresh_card_info();
                        TransportError::CardReset
                    }
                    Err(e2) => {
                        self.card = None;
                        map_error(e2, &self.reader)
                    }
                }
            }
            pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard => {
                self.card = None;
                map_error(e, &self.reader)
            }
            // A failed exchange is often the card leaving the reader before
            // pcscd noticed: give its presence poll a moment to tell. (A lost
            // service is handled by the arm below.)
            pcsc::Error::NotTransacted | pcsc::Error::CommError if !service_lost(e) => {
                if self
                    .card
                    .as_ref()
                    .is_none_or(|c| card_left_within(c, REMOVAL_GRACE))
                {
                    self.card = None;
                    TransportError::CardRemoved
                } else {
                    map_error(e, &self.reader)
                }
            }
            e if service_lost(e) => {
                tracing::warn!(reader = %self.reader, error = %e, "PC/SC service lost; reconnecting");
                self.service_lost = true;
                match self.reconnect_fresh(true) {
                    Ok(()) => TransportError::CardReset,
                    Err(err) => err,
                }
            }
            e => map_error(e, &self.reader),
        }
    }
}

/// How long a failed exchange waits for pcscd to report the card removed.
const REMOVAL_GRACE: Duration = Duration::from_millis(1500);

/// Whether the card is reported gone within `grace` (pcsc-lite polls presence
/// a few times a second, so a card that just left may still look present).
fn card_left_within(card: &pcsc::Card, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        match card.status2_owned() {
            Err(pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard) => return true,
            Err(_) => return false,
            Ok(status) if !status.status().contains(pcsc::Status::PRESENT) => return true,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) => std::thread::sleep(RECOVERY_POLL),
        }
    }
}

/// Sends one APDU on a card handle. An answer shorter than a status word means
/// the reader lost the card during the exchange (vpcd, for one, answers with
/// nothing when the card's connection drops): reported as a removed card.
fn transmit_on(card: &pcsc::Card, buf: &mut [u8], apdu: &[u8]) -> Result<Vec<u8>, pcsc::Error> {
    let rsp = card.transmit(apdu, buf)?;
    if rsp.len() < 2 {
        return Err(pcsc::Error::RemovedCard);
    }
    Ok(rsp.to_vec())
}

impl Transport for PcscCard {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.ensure_connected()?;
        let result = match &self.card {
            Some(card) => transmit_on(card, &mut self.buf, apdu),
            None => Err(pcsc::Error::NoSmartcard),
        };
        result.map_err(|e| self.recover(e))
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        if self.card.is_none() {
            return self.reconnect_fresh(false);
        }
        let result = match &mut self.card {
            Some(card) => card.reconnect(ShareMode::Shared, PROTOCOLS, Disposition::ResetCard),
            None => Err(pcsc::Error::NoSmartcard),
        };
        match result {
            Ok(()) => {
                self.refresh_card_info();
                Ok(())
            }
            Err(e) => match self.recover(e) {
                // Reconnected: the card was reset, which is what was asked.
                TransportError::CardReset => Ok(()),
                err => Err(err),
            },
        }
    }

    fn reader_name(&self) -> &str {
        &self.reader
    }

    fn supports_extended(&self) -> bool {
        self.extended_override.unwrap_or(self.extended)
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        self.ensure_connected()?;
        let extended = self.supports_extended();
        let outcome = match self.card.as_mut() {
            None => Err(pcsc::Error::NoSmartcard),
            Some(card) => match card.transaction2() {
                Err((_, e)) => Err(e),
                Ok(tx) => {
                    let mut inner = TxTransport {
                        tx,
                        reader: &self.reader,
                        atr: &mut self.atr,
                        buf: &mut self.buf,
                        extended,
                        lost: None,
                    };
                    body(&mut inner);
                    let TxTransport { tx, lost, .. } = inner;
                    let end = tx.end(Disposition::LeaveCard).map_err(|(_, e)| e).err();
                    Ok((lost, end))
                }
            },
        };
        match outcome {
            // Access not obtained: the body did not run.
            Err(e) => Err(self.recover(e)),
            // The link broke during the body (which got an error): recover now.
            Ok((Some(lost), _)) => Err(self.recover(lost)),
            Ok((None, Some(end))) if service_lost(end) || end == pcsc::Error::RemovedCard => {
                Err(self.recover(end))
            }
            Ok((None, Some(end))) => {
                tracing::warn!(reader = %self.reader, error = %end, "ending the PC/SC transaction failed");
                Ok(())
            }
            Ok((None, None)) => Ok(()),
        }
    }
}

/// The transport a body of [`PcscCard::exclusive`](Transport::exclusive) uses:
/// it sends through the open transaction and leaves recovery that needs a new
/// card handle to the `PcscCard` once the transaction is over.
struct TxTransport<'a> {
    tx: pcsc::Transaction<'a>,
    reader: &'a str,
    atr: &'a mut Vec<u8>,
    buf: &'a mut Vec<u8>,
    extended: bool,
    /// An error that needs a new handle or context, recovered after the body.
    lost: Option<pcsc::Error>,
}

impl TxTransport<'_> {
    fn fail(&mut self, e: pcsc::Error) -> TransportError {
        match e {
            pcsc::Error::ResetCard => {
                match self
                    .tx
                    .reconnect(ShareMode::Shared, PROTOCOLS, Disposition::LeaveCard)
                {
                    Ok(()) => {
                        self.refresh_atr();
                        TransportError::CardReset
                    }
                    Err(e2) => {
                        self.lost = Some(e2);
                        map_error(e2, self.reader)
                    }
                }
            }
            e if service_lost(e)
                || matches!(e, pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard) =>
            {
                self.lost = Some(e);
                map_error(e, self.reader)
            }
            pcsc::Error::NotTransacted | pcsc::Error::CommError
                if card_left_within(&self.tx, REMOVAL_GRACE) =>
            {
                self.lost = Some(pcsc::Error::RemovedCard);
                TransportError::CardRemoved
            }
            e => map_error(e, self.reader),
        }
    }

    fn refresh_atr(&mut self) {
        if let Ok(atr) = self.tx.get_attribute_owned(pcsc::Attribute::AtrString) {
            *self.atr = atr;
        }
    }
}

impl Transport for TxTransport<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if let Some(e) = self.lost {
            return Err(map_error(e, self.reader));
        }
        match transmit_on(&self.tx, self.buf, apdu) {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        match self
            .tx
            .reconnect(ShareMode::Shared, PROTOCOLS, Disposition::ResetCard)
        {
            Ok(()) => {
                self.refresh_atr();
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn reader_name(&self) -> &str {
        self.reader
    }

    fn supports_extended(&self) -> bool {
        self.extended
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        body(self);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(present: bool, atr: &[u8], count: u32) -> Seen {
        Seen {
            present,
            atr: atr.to_vec(),
            count,
        }
    }

    #[test]
    fn diff_reports_readers_and_cards() {
        let mut old = BTreeMap::new();
        old.insert("A".to_string(), s(false, &[], 0));
        old.insert("B".to_string(), s(true, &[0x3B], 1));
        old.insert("C".to_string(), s(true, &[0x3B], 1));
        let mut new = BTreeMap::new();
        new.insert("A".to_string(), s(true, &[0x3B, 0x80], 1));
        new.insert("B".to_string(), s(true, &[0x3B], 3));
        new.insert("D".to_string(), s(false, &[], 0));
        let events = diff(&old, &new);
        assert_eq!(
            events,
            vec![
                ReaderEvent::ReaderRemoved("C".into()),
                ReaderEvent::CardInserted {
                    reader: "A".into(),
                    atr: vec![0x3B, 0x80]
                },
                ReaderEvent::CardRemoved { reader: "B".into() },
                ReaderEvent::CardInserted {
                    reader: "B".into(),
                    atr: vec![0x3B]
                },
                ReaderEvent::ReaderAdded("D".into()),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn errors_map_to_typed_variants() {
        assert!(matches!(
            map_error(pcsc::Error::NoService, "r"),
            TransportError::NoService { .. }
        ));
        assert_eq!(
            map_error(pcsc::Error::ResetCard, "r"),
            TransportError::CardReset
        );
        assert_eq!(
            map_error(pcsc::Error::RemovedCard, "r"),
            TransportError::CardRemoved
        );
        assert_eq!(
            map_error(pcsc::Error::NoSmartcard, "r"),
            TransportError::NoCard { reader: "r".into() }
        );
        assert_eq!(
            map_error(pcsc::Error::SharingViolation, "r"),
            TransportError::SharingViolation
        );
        assert_eq!(
            map_error(pcsc::Error::Timeout, "r"),
            TransportError::Timeout
        );
        let other = map_error(pcsc::Error::CommError, "r").to_string();
        assert!(other.contains("0x80100013"), "{other}");
    }

    /// `PcscContext::establish` against a socket where no daemon listens gives
    /// `NoService`. pcsc-lite reads `PCSCLITE_CSOCK_NAME` once per process, so
    /// the check runs in a child process (this test binary, filtered to this test).
    #[test]
    fn establish_without_daemon_is_no_service() {
        const CHILD: &str = "DMSC_TEST_NO_SERVICE_CHILD";
        if std::env::var_os(CHILD).is_some() {
            match PcscContext::establish() {
                Err(TransportError::NoService { socket }) => {
                    assert!(socket.ends_with("no-pcscd-here.comm"), "{socket}");
                    println!("child: NoService as expected");
                }
                other => panic!("expected NoService, got {other:?}"),
            }
            return;
        }
        let dir = std::env::temp_dir().join(format!("dmsc-no-pcscd-{}", std::process::id()));
        let out = std::process::Command::new(std::env::current_exe().expect("test binary path"))
            .args([
                "--exact",
                "transport::pcsc::tests::establish_without_daemon_is_no_service",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("PCSCLITE_CSOCK_NAME", dir.join("no-pcscd-here.comm"))
            .output()
            .expect("run the child test process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("child: NoService as expected"),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
