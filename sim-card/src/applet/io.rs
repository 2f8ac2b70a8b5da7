//! The I/O layer: the only part of the applet that sees raw APDUs
//! (`docs/commands.md` §2, "Status words that any command can get", in that
//! order). It decodes the class byte (logical channels and the
//! secure-messaging indication, ISO/IEC 7816-4 §5.4.1), answers GET RESPONSE
//! and applies Le (`docs/commands.md` §6.3), selects the applet (§3.1), opens
//! SCP03 sessions and unwraps and wraps secure messaging (§3.17, §3.18, §6.4),
//! and assembles command chains (§6.1). What gets through reaches
//! `Card::dispatch` as one whole, verified [`Request`].

use alloc::vec::Vec;

use dmsc_card_model::apdu::{
    ApduError, Command, Response, Status, CLA_CHAINING, EXTENDED_MAX_NC, EXTENDED_MAX_NE,
};
use dmsc_card_model::commands::{
    algorithms, ins, AuditEvent, DecodeError, Request, SelectInfo, AID, APPLET_VERSION,
    CLA_PROPRIETARY, CLA_SECURE_MESSAGING,
};
use rand_core::{CryptoRng, RngCore};

use super::{Card, Chain, Outcome, PendingAuth};
use crate::state::Record;
use crate::store::PersistentMemory;

/// Largest command data the card assembles from a chain (`docs/commands.md` §6.1).
pub const MAX_CHAINED_DATA: usize = 128 * 1024;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    /// Processes one command APDU given as bytes; returns the response bytes
    /// (empty when the card is mute after a power loss).
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if self.mute {
            return Vec::new();
        }
        let response = match Command::decode(apdu) {
            Ok(cmd) => self.process_command(&cmd),
            Err(ApduError::InvalidClass) => Response::status(Status::ClassNotSupported),
            Err(_) => Response::status(Status::WrongLength),
        };
        if self.mute {
            return Vec::new();
        }
        response.to_bytes()
    }

    /// Processes one decoded command: the checks of `docs/commands.md` §2
    /// ("Status words that any command can get"), in that order, then the
    /// command's handler.
    pub fn process_command(&mut self, cmd: &Command) -> Response {
        if self.mute {
            return Response::status(Status::UnspecifiedPersistentExecutionError);
        }
        if let Some(refusal) = class_refusal(cmd.cla) {
            return Response::status(refusal);
        }
        let base_cla = cmd.cla & !(CLA_SECURE_MESSAGING | CLA_CHAINING);
        // §3.19: a plain GET RESPONSE is answered before the selection check.
        if base_cla == 0x00 && cmd.ins == ins::GET_RESPONSE && cmd.cla & CLA_SECURE_MESSAGING == 0 {
            return self.get_response(cmd);
        }
        self.volatile.outgoing.clear();
        if base_cla == 0x00 && cmd.ins == ins::SELECT {
            let outcome = self.select(cmd);
            let rsp = self.finish(outcome, false);
            return self.limit_to_ne(rsp, cmd.le.unwrap_or(256));
        }
        if !self.volatile.selected {
            return Response::status(Status::ConditionsOfUseNotSatisfied);
        }
        // Every command but the EXTERNAL AUTHENTICATE that follows it discards
        // a pending INITIALIZE UPDATE.
        let pending_auth = self.volatile.pending_auth.take();
        if let Some(rsp) = self.open_session(cmd, base_cla, pending_auth) {
            return rsp;
        }
        let secured = cmd.cla & CLA_SECURE_MESSAGING != 0;
        let plain = match self.unwrap_secure_messaging(cmd, secured) {
            Ok(plain) => plain,
            Err(rsp) => return rsp,
        };
        let full = match self.assemble_chain(plain, secured) {
            Ok(full) => full,
            Err(rsp) => return rsp,
        };
        self.volatile.command_level = match (secured, self.volatile.scp.as_ref()) {
            (true, Some(scp)) => scp.channel.security_level().bits(),
            _ => 0,
        };
        let outcome = match Request::from_command(&full) {
            Ok(req) => self.dispatch(req),
            Err(DecodeError::UnknownCommand) => Err(unknown_status(&full)),
            Err(e) => Err(e.status()),
        };
        self.volatile.command_level = 0;
        let rsp = self.finish(outcome, secured);
        match full.le {
            Some(ne) => self.limit_to_ne(rsp, ne),
            None if !rsp.data.is_empty() => self.limit_to_ne(rsp, 256),
            None => rsp,
        }
    }

    /// INITIALIZE UPDATE (plain, `docs/commands.md` §3.17) and EXTERNAL
    /// AUTHENTICATE (CLA `84`, §3.18) open an SCP03 session; both end the
    /// current session's chain. `None` for every other command.
    fn open_session(
        &mut self,
        cmd: &Command,
        base_cla: u8,
        pending_auth: Option<PendingAuth>,
    ) -> Option<Response> {
        if base_cla == CLA_PROPRIETARY
            && cmd.ins == ins::INITIALIZE_UPDATE
            && cmd.cla & CLA_SECURE_MESSAGING == 0
        {
            self.volatile.scp = None;
            self.volatile.chain = None;
            let outcome = self.initialize_update(cmd);
            let rsp = self.finish(outcome, false);
            return Some(self.limit_to_ne(rsp, cmd.le.unwrap_or(256)));
        }
        if cmd.ins == ins::EXTERNAL_AUTHENTICATE && cmd.cla == 0x84 {
            self.volatile.chain = None;
            let outcome = self.external_authenticate(cmd, pending_auth);
            return Some(self.finish(outcome, false));
        }
        None
    }

    /// Removes SCP03 secure messaging (C-MAC, C-DECRYPTION: `docs/commands.md`
    /// §6.4). A command without it ends an authority session (GlobalPlatform).
    /// A failed check ends the session and is counted against its authority.
    fn unwrap_secure_messaging(
        &mut self,
        cmd: &Command,
        secured: bool,
    ) -> Result<Command, Response> {
        if !secured {
            self.volatile.scp = None;
            return Ok(cmd.clone());
        }
        let Some(scp) = self.volatile.scp.as_mut() else {
            return Err(Response::status(Status::SecurityStatusNotSatisfied));
        };
        match scp.channel.unwrap_command(cmd) {
            Ok(c) => Ok(c),
            Err(_) => {
                let name = scp.authority.clone();
                self.volatile.scp = None;
                self.volatile.chain = None;
                let r = self.record_failure(
                    &name,
                    AuditEvent::AuthFailure,
                    "secure messaging check failed",
                    Record::Single,
                );
                Err(self.finish(r.and(Err(Status::SecurityStatusNotSatisfied)), false))
            }
        }
    }

    /// Command chaining (`docs/commands.md` §6.1): keeps a link with the
    /// chaining bit and answers it at once (`Err`), or gives the whole command
    /// once its last link arrives (`Ok`). Every link must have the chain's
    /// header and come under the same protection (plain, or the same
    /// authority's session).
    fn assemble_chain(&mut self, plain: Command, secured: bool) -> Result<Command, Response> {
        let header = (plain.cla & !CLA_CHAINING, plain.ins, plain.p1, plain.p2);
        let protection = if secured {
            self.volatile.scp.as_ref().map(|s| s.authority.clone())
        } else {
            None
        };
        if let Some(chain) = self.volatile.chain.as_ref() {
            if chain.header != header || chain.authority != protection {
                self.volatile.chain = None;
                return Err(self.finish(Err(Status::LastCommandOfChainExpected), secured));
            }
        }
        if plain.is_chained() {
            let chain = self.volatile.chain.get_or_insert_with(|| Chain {
                header,
                authority: protection,
                data: Vec::new(),
            });
            if chain.data.len() + plain.data.len() > MAX_CHAINED_DATA {
                self.volatile.chain = None;
                return Err(self.finish(Err(Status::WrongLength), secured));
            }
            chain.data.extend_from_slice(&plain.data);
            return Err(self.finish(Ok(Vec::new()), secured));
        }
        match self.volatile.chain.take() {
            Some(mut chain) => {
                if chain.data.len() + plain.data.len() > MAX_CHAINED_DATA {
                    return Err(self.finish(Err(Status::WrongLength), secured));
                }
                chain.data.extend_from_slice(&plain.data);
                Ok(Command {
                    cla: header.0,
                    ins: header.1,
                    p1: header.2,
                    p2: header.3,
                    data: chain.data,
                    le: plain.le,
                })
            }
            None => Ok(plain),
        }
    }

    /// Builds the response, applying R-MAC/R-ENC when a session asks for it.
    pub(super) fn finish(&mut self, outcome: Outcome, secured: bool) -> Response {
        let rsp = match outcome {
            Ok(data) => Response::ok(data),
            Err(status) => Response::status(status),
        };
        if self.mute {
            return Response::status(Status::UnspecifiedPersistentExecutionError);
        }
        match (secured, self.volatile.scp.as_mut()) {
            (true, Some(scp)) => scp.channel.wrap_response(&rsp),
            _ => rsp,
        }
    }

    /// Returns at most `ne` bytes now and keeps the rest for GET RESPONSE (61xx).
    pub(super) fn limit_to_ne(&mut self, mut rsp: Response, ne: usize) -> Response {
        let ne = ne.min(EXTENDED_MAX_NE);
        if rsp.data.len() <= ne {
            return rsp;
        }
        let rest = rsp.data.split_off(ne);
        let remaining = rest.len();
        self.volatile.outgoing = rest;
        rsp.sw = more_available(remaining);
        rsp
    }

    pub(super) fn get_response(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0 || cmd.p2 != 0 || !cmd.data.is_empty() {
            return Response::status(Status::IncorrectP1OrP2Parameter);
        }
        if self.volatile.outgoing.is_empty() {
            return Response::status(Status::ConditionsOfUseNotSatisfied);
        }
        let ne = cmd.le.unwrap_or(256);
        let mut data = core::mem::take(&mut self.volatile.outgoing);
        let rest = if data.len() > ne {
            data.split_off(ne)
        } else {
            Vec::new()
        };
        let remaining = rest.len();
        self.volatile.outgoing = rest;
        Response {
            data,
            sw: if remaining == 0 {
                Status::Success.to_u16()
            } else {
                more_available(remaining)
            },
        }
    }

    pub(super) fn select(&mut self, cmd: &Command) -> Outcome {
        // Deselect: every volatile right is lost, whatever was asked for.
        self.reset();
        if cmd.p1 != 0x04 || cmd.p2 != 0x00 {
            return Err(Status::IncorrectP1OrP2Parameter);
        }
        if cmd.data.as_slice() != AID {
            return Err(Status::NotFound);
        }
        self.volatile.selected = true;
        Ok(self.select_info().encode())
    }

    pub(super) fn select_info(&self) -> SelectInfo {
        let used = self.state.used_memory();
        SelectInfo {
            card_id: self.state.card_id,
            applet_version: APPLET_VERSION,
            generation: self.state.generation,
            max_command: EXTENDED_MAX_NC as u32,
            max_response: EXTENDED_MAX_NE as u32,
            extended_length: true,
            algorithms: algorithms::AES_CMAC
                | algorithms::HMAC_SHA256
                | algorithms::HMAC_SHA1
                | algorithms::ECDSA_P256_SHA256
                | algorithms::SCP03_AES128
                | algorithms::SCP03_AES192
                | algorithms::SCP03_AES256
                | algorithms::SCP03_S16,
            free_memory: self.state.capacity.saturating_sub(used),
            total_memory: self.state.capacity,
            scp_i: self.state.scp_i,
        }
    }
}

/// Decodes the class byte as ISO/IEC 7816-4 §5.4.1 does, with GlobalPlatform's
/// use of the proprietary classes (`80`–`9F` coded like the first interindustry
/// classes, `C0`–`FE` like the further ones). Returns the refusal, if any:
///
/// - `00`–`1F` (first interindustry): bits `03` name logical channels 0–3. Any
///   channel but 0 gets `6881`. Bits `0C`: `00` none, `04` proprietary secure
///   messaging (SCP03 here); `08` and `0C` (ISO secure messaging) get `6882`.
/// - `20`–`3F`: reserved for future use, `6E00`.
/// - `40`–`7F` (further interindustry): logical channels 4–19, always `6881`.
/// - `80`–`9F` (GlobalPlatform): channel bits as for `00`–`1F` (`6881`); secure
///   messaging indications other than `04` are not defined, `6E00`.
/// - `A0`–`BF`: no class GlobalPlatform defines, `6E00`.
/// - `C0`–`FE` (GlobalPlatform further classes): logical channels 4–19, `6881`.
/// - `FF` never reaches here (`Command::decode` refuses it).
pub(super) fn class_refusal(cla: u8) -> Option<Status> {
    match cla {
        0x00..=0x1F | 0x80..=0x9F if cla & 0x03 != 0 => Some(Status::LogicalChannelNotSupported),
        0x00..=0x1F if cla & 0x08 != 0 => Some(Status::SecureMessagingNotSupported),
        0x00..=0x1F | 0x80..=0x9F if cla & 0x08 == 0 => None,
        0x40..=0x7F | 0xC0..=0xFE => Some(Status::LogicalChannelNotSupported),
        _ => Some(Status::ClassNotSupported),
    }
}

/// `61xx`: `xx` bytes remain, `00` for 256 or more (`docs/commands.md` §6.3).
pub(super) fn more_available(remaining: usize) -> u16 {
    Status::MoreAvailable(u8::try_from(remaining).unwrap_or(0)).to_u16()
}

pub(super) fn unknown_status(cmd: &Command) -> Status {
    if ins::REQUESTS.contains(&cmd.ins) {
        Status::IncorrectP1OrP2Parameter
    } else {
        Status::InstructionNotSupportedOrInvalid
    }
}
