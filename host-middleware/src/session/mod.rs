//! A session with the dmsc applet on one card.
//!
//! [`Session`] owns a [`Transport`] and turns commands into APDU exchanges:
//!
//! - SELECT by [`AID`] and the card's capabilities ([`SelectInfo`]);
//! - extended-length APDUs when both the card and the transport allow them,
//!   short APDUs with command chaining (and Le ≤ 256) otherwise;
//! - `61xx`: GET RESPONSE (`00 C0 00 00 xx`) until the final status;
//!   `6Cxx`: the same command again with Le = `xx`;
//! - secure messaging through a [`SecureMessaging`] hook: each APDU of a
//!   chain is wrapped on its own, responses are unwrapped after reassembly,
//!   GET RESPONSE is never wrapped;
//! - status words mapped to typed [`HostError`]s;
//! - an APDU trace hook with PINs and keys redacted;
//! - every operation runs with exclusive access to the card
//!   ([`Transport::exclusive`]); [`Session::transaction`] groups several;
//! - card reset: the session selects again once and retries the operation if
//!   it is idempotent (reads) or had not started; otherwise it reports the
//!   reset. A secure channel does not survive a reset: its operations are
//!   never retried.
//!
//! The typed commands are the provided methods of [`CardCommands`], which both
//! [`Session`] and [`ExclusiveSession`] (inside a transaction) implement.

pub mod manager;
pub mod relay;
pub mod scp;
pub mod secure;
#[cfg(test)]
mod tests;
pub mod trace;

use core::fmt;

use dmsc_card_model::apdu::{
    Command, LengthForm, Response, EXTENDED_MAX_NC, EXTENDED_MAX_NE, SHORT_MAX_NC, SHORT_MAX_NE,
};
use dmsc_card_model::commands::{
    command_carries_secret, decode_list, decode_records, ins, Approval, ApprovalVerdict, ListEntry,
    ObjectData, ObjectRecord, ObjectValue, PackageId, Pin, Request, SelectInfo, AID, CLA_ISO,
    PIN_REF_USER,
};
use dmsc_card_model::objects::{Acl, ObjectKind, ObjectRef};
use zeroize::Zeroize;

use crate::error::{check_status, command_name, HostError, ProtocolFault, Status};
use crate::session::secure::{SecureMessaging, SmError};
use crate::session::trace::{format_command, format_response, Direction, TraceEvent, TraceHook};
use crate::transport::{Transport, TransportError};

/// Largest response the session reassembles from `61xx` chunks.
pub const MAX_RESPONSE_LEN: usize = 4 << 20;
/// Largest data field the session puts in one extended APDU, command or
/// response. ISO allows 65 535 / 65 536, but a PC/SC stack rarely carries that
/// end to end: vsmartcard's vpcd frames an APDU with a 16-bit length, so a whole
/// APDU (header, length fields, data) must stay under 65 536 bytes. Above this
/// the session chains commands and fetches the rest with GET RESPONSE.
pub const EXTENDED_DATA_LIMIT: usize = 65_024;
/// Most GET RESPONSE / `6Cxx` rounds for one APDU.
const MAX_ROUNDS: usize = 20_000;

/// The APDU sizes a session uses with its card and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApduLimits {
    /// Whether extended-length APDUs are used.
    pub extended: bool,
    /// Largest data field of one command APDU (chaining above it).
    pub max_command: usize,
    /// Largest Ne of one command APDU (`61xx` / GET RESPONSE for more).
    pub max_response: usize,
}

impl ApduLimits {
    /// Short APDUs only: Nc ≤ 255, Ne ≤ 256.
    pub const SHORT: ApduLimits = ApduLimits {
        extended: false,
        max_command: SHORT_MAX_NC,
        max_response: SHORT_MAX_NE,
    };

    /// The limits for a card (as SELECT describes it) over a transport.
    pub fn negotiate(info: Option<&SelectInfo>, transport_extended: bool) -> ApduLimits {
        let Some(info) = info else {
            return ApduLimits::SHORT;
        };
        let card_nc = (info.max_command as usize).max(1);
        let card_ne = (info.max_response as usize).max(1);
        if info.extended_length && transport_extended {
            ApduLimits {
                extended: true,
                max_command: card_nc.min(EXTENDED_MAX_NC).min(EXTENDED_DATA_LIMIT),
                max_response: card_ne.min(EXTENDED_MAX_NE).min(EXTENDED_DATA_LIMIT),
            }
        } else {
            ApduLimits {
                extended: false,
                max_command: card_nc.min(SHORT_MAX_NC),
                max_response: SHORT_MAX_NE,
            }
        }
    }
}

/// The state of the user PIN (or PUK) as VERIFY without data reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// Verified in this card session (`9000`).
    Verified,
    /// Not verified; `tries_left` tries before it blocks (`63Cx`).
    NotVerified {
        /// Tries left.
        tries_left: u8,
    },
    /// Blocked (`6983`).
    Blocked,
}

/// Whether an operation may run again after the card was reset under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: run again after re-selecting.
    Idempotent,
    /// Writes: run again only if it had not started.
    IfNotStarted,
}

fn retry_class(req: &Request) -> Retry {
    match req {
        Request::Select { .. }
        | Request::ReadObject { .. }
        | Request::ListObjects { .. }
        | Request::ReadAllObjects { .. }
        | Request::Verify { pin: None, .. }
        | Request::GetChallenge { .. }
        | Request::InternalAuthenticate { .. } => Retry::Idempotent,
        _ => Retry::IfNotStarted,
    }
}

/// Whether a command is SELECT by name (which changes the selected applet).
fn is_select(cmd: &Command) -> bool {
    cmd.cla & 0x80 == 0 && cmd.ins == ins::SELECT && cmd.p1 == 0x04
}

/// The class byte of a GET RESPONSE answering a command of class `cla`: the
/// same logical channel (ISO/IEC 7816-4 §5.4.1), without chaining or secure
/// messaging. Proprietary classes use the basic channel.
fn get_response_cla(cla: u8) -> u8 {
    match cla {
        // First interindustry values: channels 0-3 in b2-b1.
        0x00..=0x3F => CLA_ISO | (cla & 0x03),
        // Further interindustry values: channel 4 + b4-b1.
        0x40..=0x7F => 0x40 | (cla & 0x0F),
        _ => CLA_ISO,
    }
}

/// Whether a transport error means the card's volatile state is gone.
fn state_lost(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::CardReset | TransportError::CardRemoved | TransportError::NoService { .. }
    )
}

/// What a session knows about the card besides the transport.
struct State {
    /// What the last SELECT returned.
    info: Option<SelectInfo>,
    /// The card the session is bound to (set by an explicit select).
    card_id: Option<[u8; 16]>,
    /// Whether the applet is selected in the card's current session.
    selected: bool,
    sm: Option<Box<dyn SecureMessaging>>,
    trace: Option<TraceHook>,
}

impl State {
    fn lose_card_state(&mut self) {
        if self.selected || self.sm.is_some() {
            tracing::debug!("card state lost: applet to be selected again, secure channel dropped");
        }
        self.selected = false;
        self.sm = None;
    }

    fn emit(&mut self, direction: Direction, hex: String, secured: bool) {
        if let Some(hook) = &mut self.trace {
            hook(&TraceEvent {
                direction,
                hex,
                secured,
            });
        }
    }
}

/// A session with the dmsc applet over a transport.
///
/// Each operation runs in its own exclusive transaction; use
/// [`transaction`](Session::transaction) to run several without another
/// application's APDUs in between.
pub struct Session<T: Transport> {
    transport: T,
    state: State,
}

impl<T: Transport> fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("reader", &self.transport.reader_name())
            .field("selected", &self.state.selected)
            .field("secured", &self.state.sm.is_some())
            .field("info", &self.state.info)
            .finish()
    }
}

impl<T: Transport> Session<T> {
    /// A session over `transport`; nothing is sent until the first operation.
    pub fn new(transport: T) -> Session<T> {
        Session {
            transport,
            state: State {
                info: None,
                card_id: None,
                selected: false,
                sm: None,
                trace: None,
            },
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (APDUs sent directly bypass the session's state).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Ends the session and returns the transport.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Installs the APDU trace hook; it receives redacted hex.
    pub fn set_trace(&mut self, hook: TraceHook) {
        self.state.trace = Some(hook);
    }

    /// Removes the trace hook.
    pub fn clear_trace(&mut self) {
        self.state.trace = None;
    }

    /// Installs secure messaging for the following commands (after the secure
    /// channel was opened, e.g. by SCP03 EXTERNAL AUTHENTICATE).
    pub fn set_secure_messaging(&mut self, sm: Box<dyn SecureMessaging>) {
        self.state.sm = Some(sm);
    }

    /// Drops secure messaging (commands go in plain again).
    pub fn clear_secure_messaging(&mut self) {
        self.state.sm = None;
    }

    /// Whether commands are currently wrapped by secure messaging.
    pub fn is_secured(&self) -> bool {
        self.state.sm.is_some()
    }

    /// The APDU limits in use (short until the applet was selected).
    pub fn limits(&self) -> ApduLimits {
        ApduLimits::negotiate(self.state.info.as_ref(), self.transport.supports_extended())
    }

    /// Warm-resets the card; the applet is selected again by the next operation.
    pub fn reset(&mut self) -> Result<(), HostError> {
        self.state.lose_card_state();
        self.transport.reset()?;
        Ok(())
    }

    /// Runs `f` with exclusive access to the card: no other application's
    /// APDU comes between the commands `f` sends.
    ///
    /// If the card turns out to have been reset before `f` started, the
    /// applet is selected again and `f` runs; a reset while `f` runs is
    /// reported (as `HostError::Transport(CardReset)`), not retried.
    pub fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut ExclusiveSession<'_>) -> Result<R, HostError>,
    ) -> Result<R, HostError> {
        let mut f = Some(f);
        self.run(Retry::IfNotStarted, |x| match f.take() {
            Some(f) => f(x),
            None => Err(HostError::Protocol {
                command: "transaction",
                fault: ProtocolFault::RanTwice,
            }),
        })
    }

    /// Runs one operation in a transaction, with the reset/retry policy.
    fn run<R>(
        &mut self,
        retry: Retry,
        mut op: impl FnMut(&mut ExclusiveSession<'_>) -> Result<R, HostError>,
    ) -> Result<R, HostError> {
        let mut retried = false;
        loop {
            let secured = self.state.sm.is_some();
            let state = &mut self.state;
            let mut value = None;
            let result = self.transport.exclusive(&mut |t| {
                let mut x = ExclusiveSession {
                    transport: t,
                    state: &mut *state,
                };
                value = Some(op(&mut x));
            });
            let started = value.is_some();
            if let Err(e) = &result {
                if state_lost(e) {
                    self.state.lose_card_state();
                }
            }
            let outcome = match (value, result) {
                (Some(Ok(v)), _) => Ok(v),
                // The transport's verdict on the link (e.g. recovered: CardReset)
                // supersedes the error the body saw when the link broke.
                (Some(Err(HostError::Transport(_))), Err(e)) => Err(HostError::Transport(e)),
                (Some(Err(e)), _) => Err(e),
                (None, Err(e)) => Err(HostError::Transport(e)),
                (None, Ok(())) => Err(HostError::Protocol {
                    command: "transaction",
                    fault: ProtocolFault::NotRun,
                }),
            };
            match outcome {
                Err(HostError::Transport(TransportError::CardReset))
                    if !retried && !secured && (!started || retry == Retry::Idempotent) =>
                {
                    tracing::info!(
                        reader = %self.transport.reader_name(),
                        "card reset; selecting the applet again and retrying"
                    );
                    retried = true;
                }
                other => return other,
            }
        }
    }
}

/// The session's operations inside one exclusive transaction
/// ([`Session::transaction`]).
pub struct ExclusiveSession<'a> {
    transport: &'a mut dyn Transport,
    state: &'a mut State,
}

impl fmt::Debug for ExclusiveSession<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExclusiveSession")
            .field("reader", &self.transport.reader_name())
            .field("selected", &self.state.selected)
            .finish()
    }
}

impl ExclusiveSession<'_> {
    /// The APDU limits in use.
    pub fn limits(&self) -> ApduLimits {
        ApduLimits::negotiate(self.state.info.as_ref(), self.transport.supports_extended())
    }

    /// Marks the card state lost when a transport error says so.
    fn note<R>(&mut self, r: Result<R, HostError>) -> Result<R, HostError> {
        if let Err(HostError::Transport(e)) = &r {
            // The exchange broke somewhere in the middle: the applet's
            // selection and any secure channel are no longer known to hold.
            tracing::debug!(error = %e, "transport error during an exchange");
            self.state.lose_card_state();
        }
        r
    }

    /// Selects the applet if it is not selected in the card's current session;
    /// checks that the card is still the one the session is bound to.
    fn ensure_selected(&mut self) -> Result<(), HostError> {
        if self.state.selected {
            return Ok(());
        }
        let info = self.select_applet()?;
        match self.state.card_id {
            Some(expected) if expected != info.card_id => Err(HostError::CardChanged {
                expected,
                found: info.card_id,
            }),
            Some(_) => Ok(()),
            None => {
                self.state.card_id = Some(info.card_id);
                Ok(())
            }
        }
    }

    fn select_applet(&mut self) -> Result<SelectInfo, HostError> {
        // SELECT ends any secure channel on the card.
        self.state.sm = None;
        self.state.selected = false;
        let cmd = Request::Select { aid: AID.to_vec() }.to_command();
        let resp = self.exchange(&cmd)?;
        let data = check_status(&cmd, resp)?;
        let info = SelectInfo::decode(&data).map_err(|source| HostError::Decode {
            command: "SELECT",
            source,
        })?;
        self.state.info = Some(info.clone());
        self.state.selected = true;
        Ok(info)
    }

    /// One command through chaining, secure messaging and `61xx`/`6Cxx`.
    fn exchange(&mut self, cmd: &Command) -> Result<Response, HostError> {
        let r = self.exchange_inner(cmd);
        self.note(r)
    }

    fn exchange_inner(&mut self, cmd: &Command) -> Result<Response, HostError> {
        let name = command_name(cmd);
        let limits = self.limits();
        let secret = command_carries_secret(cmd);
        let chunk = match &self.state.sm {
            Some(sm) => sm.max_plain_len(limits.max_command),
            None => limits.max_command,
        };
        if chunk == 0 {
            return Err(HostError::SecureMessaging {
                command: name,
                source: SmError::NoRoom,
            });
        }
        let mut plain = cmd.clone();
        plain.le = cmd.le.map(|ne| ne.min(limits.max_response));
        let mut links = plain.chain(chunk);
        if secret {
            plain.data.zeroize();
        }
        let last = links.len() - 1;
        let mut result = Err(HostError::Protocol {
            command: name,
            fault: ProtocolFault::EmptyChain,
        });
        for (i, link) in links.iter().enumerate() {
            result = self.exchange_link(link, limits, secret, name);
            match &result {
                Ok(resp) if i < last && resp.sw != 0x9000 => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if secret {
            for link in &mut links {
                link.data.zeroize();
            }
        }
        result
    }

    /// Wraps a plain APDU when secure messaging is on.
    fn wrap(&mut self, plain: &Command, name: &'static str) -> Result<Command, HostError> {
        match &mut self.state.sm {
            Some(sm) => sm.wrap(plain).map_err(|e| HostError::SecureMessaging {
                command: name,
                source: e,
            }),
            None => Ok(plain.clone()),
        }
    }

    /// Traces, encodes and sends one APDU; returns its raw response.
    fn send(
        &mut self,
        plain: &Command,
        wire: &Command,
        limits: ApduLimits,
        secret: bool,
        name: &'static str,
    ) -> Result<Response, HostError> {
        let secured = self.state.sm.is_some() && wire.ins != ins::GET_RESPONSE;
        let shown = if secured { plain } else { wire };
        let text = format_command(shown, limits.extended, secret);
        self.state.emit(Direction::Command, text, secured);

        let mut wire = Scrubbed::new(wire.clone(), secret);
        if !limits.extended {
            wire.le = wire.le.map(|ne| ne.min(SHORT_MAX_NE));
        }
        let form = if wire.fits_short() {
            LengthForm::Short
        } else if limits.extended {
            LengthForm::Extended
        } else {
            return Err(HostError::Protocol {
                command: name,
                fault: ProtocolFault::NeedsExtendedLength {
                    len: wire.data.len(),
                },
            });
        };
        let mut bytes = wire.encode(form).map_err(|source| HostError::Apdu {
            command: name,
            source,
        })?;
        let sent = self.transport.transmit(&bytes);
        if secret {
            bytes.zeroize();
        }
        let raw = sent?;
        let resp =
            Response::from_bytes(&raw).map_err(|_| TransportError::MalformedResponse(raw.len()))?;
        if !secured {
            self.state
                .emit(Direction::Response, format_response(&resp), false);
        }
        Ok(resp)
    }

    /// One APDU of a chain: `61xx` reassembly, `6Cxx` resend, unwrapping.
    fn exchange_link(
        &mut self,
        link: &Command,
        limits: ApduLimits,
        secret: bool,
        name: &'static str,
    ) -> Result<Response, HostError> {
        let mut plain = Scrubbed::new(link.clone(), secret);
        let wire = Scrubbed::new(self.wrap(&plain, name)?, secret);
        let mut resp = self.send(&plain, &wire, limits, secret, name)?;
        // The command a 6Cxx refers to: the original, or the last GET RESPONSE.
        let mut get_response: Option<Command> = None;
        let mut data = Vec::new();
        let mut rounds = 0;
        let final_resp = loop {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(HostError::Protocol {
                    command: name,
                    fault: ProtocolFault::NoFinalStatus { rounds: MAX_ROUNDS },
                });
            }
            let [sw1, sw2] = resp.sw.to_be_bytes();
            // `6100` means 256 or more: with extended length, ask for as much
            // as one response may carry.
            let ne = match sw2 {
                0 if limits.extended => limits.max_response,
                0 => 256,
                n => usize::from(n),
            };
            match sw1 {
                0x61 => {
                    data.extend_from_slice(&resp.data);
                    if data.len() > MAX_RESPONSE_LEN {
                        return Err(HostError::Protocol {
                            command: name,
                            fault: ProtocolFault::ResponseTooLong {
                                max: MAX_RESPONSE_LEN,
                            },
                        });
                    }
                    let gr = Command::new(get_response_cla(link.cla), ins::GET_RESPONSE, 0, 0)
                        .with_le(ne);
                    resp = self.send(&gr, &gr, limits, false, name)?;
                    get_response = Some(gr);
                }
                0x6C => match &mut get_response {
                    Some(gr) => {
                        gr.le = Some(ne);
                        let gr = gr.clone();
                        resp = self.send(&gr, &gr, limits, false, name)?;
                    }
                    None => {
                        plain.le = Some(ne);
                        let wire = Scrubbed::new(self.wrap(&plain, name)?, secret);
                        resp = self.send(&plain, &wire, limits, secret, name)?;
                    }
                },
                _ => {
                    data.extend_from_slice(&resp.data);
                    break Response { data, sw: resp.sw };
                }
            }
        };
        match &mut self.state.sm {
            Some(sm) => {
                let unwrapped = sm
                    .unwrap(&final_resp)
                    .map_err(|e| HostError::SecureMessaging {
                        command: name,
                        source: e,
                    })?;
                self.state
                    .emit(Direction::Response, format_response(&unwrapped), true);
                Ok(unwrapped)
            }
            None => Ok(final_resp),
        }
    }
}

/// A copy of a command whose data field is wiped when the copy goes out of
/// scope, on every path, if it carries a PIN or a key.
struct Scrubbed {
    cmd: Command,
    secret: bool,
}

impl Scrubbed {
    fn new(cmd: Command, secret: bool) -> Scrubbed {
        Scrubbed { cmd, secret }
    }
}

impl core::ops::Deref for Scrubbed {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl core::ops::DerefMut for Scrubbed {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

impl Drop for Scrubbed {
    fn drop(&mut self) {
        if self.secret {
            self.cmd.data.zeroize();
        }
    }
}

/// The dmsc command set over a session.
///
/// [`Session`] runs each method in its own transaction (with the reset/retry
/// policy); [`ExclusiveSession`] runs them in the enclosing transaction.
pub trait CardCommands {
    /// Selects the applet (always sends SELECT) and returns what it reports;
    /// ends any secure channel. On a [`Session`] this also binds the session
    /// to the card now present.
    fn select(&mut self) -> Result<SelectInfo, HostError>;

    /// What the last SELECT returned.
    fn select_info(&self) -> Option<&SelectInfo>;

    /// Sends one command (chained, wrapped, reassembled as needed) and returns
    /// the response whatever its status word. Re-selects the applet first if
    /// the card lost its state since the session selected it.
    fn transmit(&mut self, cmd: &Command) -> Result<Response, HostError>;

    /// Sends a typed request, selecting the applet first when needed, and
    /// returns the response data on `9000` or the typed error of the status word.
    fn request(&mut self, req: &Request) -> Result<Vec<u8>, HostError>;

    /// The state of a PIN (`PIN_REF_USER`) or PUK (`PIN_REF_PUK`): VERIFY
    /// without data.
    fn pin_status(&mut self, reference: u8) -> Result<PinStatus, HostError> {
        match self.request(&Request::Verify {
            reference,
            pin: None,
        }) {
            Ok(_) => Ok(PinStatus::Verified),
            Err(HostError::Card {
                status: Status::RemainingRetries(tries_left),
                ..
            }) => Ok(PinStatus::NotVerified { tries_left }),
            Err(HostError::Card {
                status: Status::OperationBlocked,
                ..
            }) => Ok(PinStatus::Blocked),
            Err(e) => Err(e),
        }
    }

    /// The state of the user PIN.
    fn pin_tries(&mut self) -> Result<PinStatus, HostError> {
        self.pin_status(PIN_REF_USER)
    }

    /// VERIFY the user PIN. A wrong PIN is [`HostError::Card`] with `63Cx`.
    fn verify_pin(&mut self, pin: &Pin) -> Result<(), HostError> {
        self.request(&Request::Verify {
            reference: PIN_REF_USER,
            pin: Some(pin.clone()),
        })
        .map(drop)
    }

    /// CHANGE REFERENCE DATA of the user PIN.
    fn change_pin(&mut self, old: &Pin, new: &Pin) -> Result<(), HostError> {
        self.request(&Request::ChangePin {
            old: old.clone(),
            new: new.clone(),
        })
        .map(drop)
    }

    /// RESET RETRY COUNTER of the user PIN with the PUK, setting a new PIN.
    fn unblock_pin(&mut self, puk: &Pin, new: &Pin) -> Result<(), HostError> {
        self.request(&Request::ResetRetryCounter {
            puk: puk.clone(),
            new: new.clone(),
        })
        .map(drop)
    }

    /// GET DATA of one object: its value and ACL.
    fn read_object(&mut self, object: &ObjectRef) -> Result<ObjectData, HostError> {
        let data = self.request(&Request::ReadObject {
            object: object.clone(),
            audit_from: None,
        })?;
        ObjectData::decode(object.kind(), &data).map_err(|source| HostError::Decode {
            command: "GET DATA",
            source,
        })
    }

    /// GET DATA of the audit log, from sequence number `from` on.
    fn read_audit_log(&mut self, from: Option<u32>) -> Result<ObjectData, HostError> {
        let data = self.request(&Request::ReadObject {
            object: ObjectRef::AuditLog,
            audit_from: from,
        })?;
        ObjectData::decode(ObjectKind::AuditLog, &data).map_err(|source| HostError::Decode {
            command: "GET DATA",
            source,
        })
    }

    /// GET DATA: the objects of a named kind.
    fn list(&mut self, kind: ObjectKind) -> Result<Vec<ListEntry>, HostError> {
        let data = self.request(&Request::ListObjects { kind })?;
        decode_list(&data).map_err(|source| HostError::Decode {
            command: "GET DATA",
            source,
        })
    }

    /// GET DATA "read all": every object of `kind` the caller may read, with
    /// value and ACL, in one response (MOs only).
    fn read_all(&mut self, kind: ObjectKind) -> Result<Vec<ObjectRecord>, HostError> {
        let data = self.request(&Request::ReadAllObjects { kind })?;
        decode_records(kind, &data).map_err(|source| HostError::Decode {
            command: "GET DATA",
            source,
        })
    }

    /// PUT DATA: create or replace an object, optionally with its ACL.
    fn put_object(
        &mut self,
        object: &ObjectRef,
        value: &ObjectValue,
        acl: Option<&Acl>,
    ) -> Result<(), HostError> {
        self.request(&Request::PutObject {
            object: object.clone(),
            value: value.clone(),
            acl: acl.cloned(),
        })
        .map(drop)
    }

    /// PUT DATA with only an ACL: change an object's ACL.
    fn set_acl(&mut self, object: &ObjectRef, acl: &Acl) -> Result<(), HostError> {
        self.request(&Request::SetAcl {
            object: object.clone(),
            acl: acl.clone(),
        })
        .map(drop)
    }

    /// DELETE an object.
    fn delete(&mut self, object: &ObjectRef) -> Result<(), HostError> {
        self.request(&Request::DeleteObject {
            object: object.clone(),
        })
        .map(drop)
    }

    /// GET CHALLENGE: `len` random bytes from the card.
    fn get_challenge(&mut self, len: usize) -> Result<Vec<u8>, HostError> {
        self.request(&Request::GetChallenge { len })
    }

    /// INTERNAL AUTHENTICATE: the card signs `challenge` with its identity key.
    fn internal_authenticate(&mut self, challenge: &[u8]) -> Result<Vec<u8>, HostError> {
        self.request(&Request::InternalAuthenticate {
            challenge: challenge.to_vec(),
        })
    }

    /// Verifies a MAC with a bootstrap key on the card: MANAGE SECURITY
    /// ENVIRONMENT (select the key), then PERFORM SECURITY OPERATION VERIFY
    /// CRYPTOGRAPHIC CHECKSUM. `9000` is true, `6300` false.
    fn verify_mac(&mut self, key_id: u8, data: &[u8], mac: &[u8]) -> Result<bool, HostError> {
        self.request(&Request::SelectMacKey { key_id })?;
        match self.request(&Request::VerifyMac {
            data: data.to_vec(),
            mac: mac.to_vec(),
        }) {
            Ok(_) => Ok(true),
            Err(HostError::Card {
                status: Status::VerificationFailed,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// CHECK APPROVAL of a package with the approvers' signatures.
    fn check_approval(
        &mut self,
        package: &PackageId,
        approvals: &[Approval],
    ) -> Result<ApprovalVerdict, HostError> {
        let data = self.request(&Request::CheckApproval {
            package: package.clone(),
            approvals: approvals.to_vec(),
        })?;
        ApprovalVerdict::decode(&data).map_err(|source| HostError::Decode {
            command: "CHECK APPROVAL",
            source,
        })
    }

    /// CONFIRM INSTALLED: move the device class's anti-rollback floor.
    fn confirm_installed(&mut self, package: &PackageId) -> Result<(), HostError> {
        self.request(&Request::ConfirmInstalled {
            package: package.clone(),
        })
        .map(drop)
    }
}

impl CardCommands for ExclusiveSession<'_> {
    fn select(&mut self) -> Result<SelectInfo, HostError> {
        let info = self.select_applet()?;
        self.state.card_id = Some(info.card_id);
        Ok(info)
    }

    fn select_info(&self) -> Option<&SelectInfo> {
        self.state.info.as_ref()
    }

    fn transmit(&mut self, cmd: &Command) -> Result<Response, HostError> {
        let select = is_select(cmd);
        if self.state.info.is_some() && !select {
            self.ensure_selected()?;
        }
        let resp = self.exchange(cmd)?;
        if select {
            // Whatever was selected now, the secure channel is over; the
            // applet is selected only if this selected it.
            self.state.sm = None;
            self.state.selected = resp.sw == 0x9000 && cmd.data.as_slice() == AID;
        }
        Ok(resp)
    }

    fn request(&mut self, req: &Request) -> Result<Vec<u8>, HostError> {
        let cmd = req.to_command();
        let resp = match req {
            Request::Select { aid } if aid.as_slice() == AID => {
                return self.select().map(|i| i.encode());
            }
            Request::Select { .. } => self.transmit(&cmd),
            _ => self.ensure_selected().and_then(|()| self.exchange(&cmd)),
        };
        let result = resp.and_then(|r| check_status(&cmd, r));
        if command_carries_secret(&cmd) {
            let mut cmd = cmd;
            cmd.data.zeroize();
        }
        result
    }
}

impl<T: Transport> CardCommands for Session<T> {
    fn select(&mut self) -> Result<SelectInfo, HostError> {
        self.run(Retry::Idempotent, |x| x.select())
    }

    fn select_info(&self) -> Option<&SelectInfo> {
        self.state.info.as_ref()
    }

    fn transmit(&mut self, cmd: &Command) -> Result<Response, HostError> {
        self.run(Retry::IfNotStarted, |x| x.transmit(cmd))
    }

    fn request(&mut self, req: &Request) -> Result<Vec<u8>, HostError> {
        self.run(retry_class(req), |x| x.request(req))
    }

    /// Both commands run in one transaction so that no other application can
    /// change the security environment in between.
    fn verify_mac(&mut self, key_id: u8, data: &[u8], mac: &[u8]) -> Result<bool, HostError> {
        self.run(Retry::IfNotStarted, |x| x.verify_mac(key_id, data, mac))
    }
}
