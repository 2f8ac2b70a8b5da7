//! ISO/IEC 7816-4 command and response APDUs: cases 1–4, short and extended
//! length, and command chaining (CLA bit `0x10`).

use alloc::vec::Vec;
use core::fmt;

pub use iso7816::Status;

/// Largest Nc of a short APDU.
pub const SHORT_MAX_NC: usize = 255;
/// Largest Ne of a short APDU (Le = `00`).
pub const SHORT_MAX_NE: usize = 256;
/// Largest Nc of an extended APDU.
pub const EXTENDED_MAX_NC: usize = 65_535;
/// Largest Ne of an extended APDU (Le = `0000`).
pub const EXTENDED_MAX_NE: usize = 65_536;
/// The CLA bit that marks a command as "not the last of a chain".
pub const CLA_CHAINING: u8 = 0x10;

/// Why a byte string is not a well-formed APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApduError {
    /// Fewer than the four header bytes.
    TooShort,
    /// CLA `FF` is reserved for PPS and never a command.
    InvalidClass,
    /// The body's length bytes do not match the number of bytes present.
    LengthMismatch,
    /// Lc of zero in extended form, or Nc/Ne beyond what the chosen form can carry.
    InvalidLength,
    /// A response shorter than its two status bytes.
    MissingStatusWord,
}

impl fmt::Display for ApduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApduError::TooShort => "APDU shorter than its 4-byte header",
            ApduError::InvalidClass => "CLA byte FF is not a valid command class",
            ApduError::LengthMismatch => "APDU length bytes do not match its size",
            ApduError::InvalidLength => "APDU length out of range for its form",
            ApduError::MissingStatusWord => "response shorter than its 2-byte status word",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ApduError {}

/// The four cases of ISO/IEC 7816-3 §12.1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// No data, no response data expected.
    NoData,
    /// No data, response data expected (Le present).
    Expect,
    /// Data, no response data expected.
    Send,
    /// Data and response data expected.
    SendExpect,
}

/// How the length fields of a command are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthForm {
    /// Short form only; fails if Nc > 255 or Ne > 256.
    Short,
    /// Extended form always (for cases 2–4).
    Extended,
    /// Short when it fits, extended otherwise.
    Auto,
}

/// A command APDU.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte (CLA).
    pub cla: u8,
    /// Instruction byte (INS).
    pub ins: u8,
    /// Parameter byte P1.
    pub p1: u8,
    /// Parameter byte P2.
    pub p2: u8,
    /// The command data field (Nc bytes; empty when there is none).
    pub data: Vec<u8>,
    /// Ne, the number of response bytes expected; `None` when Le is absent.
    /// `Some(256)` is short Le `00`, `Some(65536)` is extended Le `0000`.
    pub le: Option<usize>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Command {{ {:02X} {:02X} {:02X} {:02X}, Nc={}, Ne={:?} }}",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

impl Command {
    /// A case 1 command.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    /// Sets the command data field.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// Sets Ne.
    pub fn with_le(mut self, ne: usize) -> Self {
        self.le = Some(ne);
        self
    }

    /// The command's case.
    pub fn case(&self) -> Case {
        match (self.data.is_empty(), self.le.is_some()) {
            (true, false) => Case::NoData,
            (true, true) => Case::Expect,
            (false, false) => Case::Send,
            (false, true) => Case::SendExpect,
        }
    }

    /// Whether CLA marks this command as followed by more of its chain (bit `10`,
    /// for the interindustry class and the GlobalPlatform proprietary classes alike).
    pub fn is_chained(&self) -> bool {
        self.cla & CLA_CHAINING != 0
    }

    /// Whether the short form can carry this command.
    pub fn fits_short(&self) -> bool {
        self.data.len() <= SHORT_MAX_NC && self.le.is_none_or(|ne| ne <= SHORT_MAX_NE)
    }

    /// Encodes the command in the given length form.
    pub fn encode(&self, form: LengthForm) -> Result<Vec<u8>, ApduError> {
        let extended = match form {
            LengthForm::Short => {
                if !self.fits_short() {
                    return Err(ApduError::InvalidLength);
                }
                false
            }
            LengthForm::Extended => true,
            LengthForm::Auto => !self.fits_short(),
        };
        let nc = self.data.len();
        if nc > EXTENDED_MAX_NC || self.le.is_some_and(|ne| ne == 0 || ne > EXTENDED_MAX_NE) {
            return Err(ApduError::InvalidLength);
        }
        let mut out = Vec::with_capacity(4 + 3 + nc + 3);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if self.case() == Case::NoData {
            return Ok(out);
        }
        if !extended {
            if nc > 0 {
                out.push(nc as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.le {
                out.push(if ne == SHORT_MAX_NE { 0 } else { ne as u8 });
            }
        } else {
            out.push(0);
            if nc > 0 {
                out.extend_from_slice(&(nc as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.le {
                let le = if ne == EXTENDED_MAX_NE { 0 } else { ne as u16 };
                out.extend_from_slice(&le.to_be_bytes());
            }
        }
        Ok(out)
    }

    /// Encodes short when possible, extended otherwise.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ApduError> {
        self.encode(LengthForm::Auto)
    }

    /// Decodes any case, short or extended. Strict: every byte must be accounted for.
    pub fn decode(bytes: &[u8]) -> Result<Command, ApduError> {
        if bytes.len() < 4 {
            return Err(ApduError::TooShort);
        }
        if bytes[0] == 0xFF {
            return Err(ApduError::InvalidClass);
        }
        let mut cmd = Command::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let body = &bytes[4..];
        match body.len() {
            0 => {}
            1 => cmd.le = Some(short_ne(body[0])),
            // `00 xx`: neither a short Lc (never zero) nor an extended length.
            2 if body[0] == 0 => return Err(ApduError::LengthMismatch),
            _ if body[0] != 0 => {
                // Short case 3 or 4.
                let nc = body[0] as usize;
                match body.len().checked_sub(1 + nc) {
                    Some(0) => cmd.data = body[1..].to_vec(),
                    Some(1) => {
                        cmd.data = body[1..1 + nc].to_vec();
                        cmd.le = Some(short_ne(body[1 + nc]));
                    }
                    _ => return Err(ApduError::LengthMismatch),
                }
            }
            3 => cmd.le = Some(extended_ne(body[1], body[2])),
            _ => {
                // Extended case 3 or 4: 00 Lc1 Lc2 data [Le1 Le2].
                let nc = u16::from_be_bytes([body[1], body[2]]) as usize;
                if nc == 0 {
                    return Err(ApduError::InvalidLength);
                }
                match body.len().checked_sub(3 + nc) {
                    Some(0) => cmd.data = body[3..].to_vec(),
                    Some(2) => {
                        cmd.data = body[3..3 + nc].to_vec();
                        cmd.le = Some(extended_ne(body[3 + nc], body[4 + nc]));
                    }
                    _ => return Err(ApduError::LengthMismatch),
                }
            }
        }
        Ok(cmd)
    }

    /// Splits the command into a chain whose data fields hold at most `max_chunk`
    /// bytes each. Every command but the last has the chaining bit set; only the
    /// last carries Le. A command that fits is returned alone, unchanged.
    pub fn chain(&self, max_chunk: usize) -> Vec<Command> {
        let max_chunk = max_chunk.max(1);
        if self.data.len() <= max_chunk {
            return alloc::vec![self.clone()];
        }
        let chunks: Vec<&[u8]> = self.data.chunks(max_chunk).collect();
        let last = chunks.len() - 1;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| Command {
                cla: if i < last {
                    self.cla | CLA_CHAINING
                } else {
                    self.cla
                },
                ins: self.ins,
                p1: self.p1,
                p2: self.p2,
                data: chunk.to_vec(),
                le: if i < last { None } else { self.le },
            })
            .collect()
    }
}

fn short_ne(le: u8) -> usize {
    if le == 0 {
        SHORT_MAX_NE
    } else {
        le as usize
    }
}

fn extended_ne(hi: u8, lo: u8) -> usize {
    match u16::from_be_bytes([hi, lo]) {
        0 => EXTENDED_MAX_NE,
        n => n as usize,
    }
}

/// A response APDU: data and status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The response data field.
    pub data: Vec<u8>,
    /// The status word SW1-SW2 (see [`Status`] for its meaning).
    pub sw: u16,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Response {{ {} bytes, SW={:04X} }}",
            self.data.len(),
            self.sw
        )
    }
}

impl Response {
    /// A response with data and `9000`.
    pub fn ok(data: impl Into<Vec<u8>>) -> Self {
        Response {
            data: data.into(),
            sw: Status::Success.to_u16(),
        }
    }

    /// A response with no data and the given status.
    pub fn status(status: Status) -> Self {
        Response {
            data: Vec::new(),
            sw: status.to_u16(),
        }
    }

    /// The typed status word.
    pub fn status_word(&self) -> Status {
        Status::from_u16(self.sw)
    }

    /// Whether the status word is `9000`.
    pub fn is_ok(&self) -> bool {
        self.sw == Status::Success.to_u16()
    }

    /// Data followed by SW1 SW2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }

    /// Splits data from the trailing status word.
    pub fn from_bytes(bytes: &[u8]) -> Result<Response, ApduError> {
        if bytes.len() < 2 {
            return Err(ApduError::MissingStatusWord);
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(Response {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw[0], sw[1]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn cases_round_trip_short_and_extended() {
        let cmds = [
            Command::new(0x00, 0xA4, 0x04, 0x00),
            Command::new(0x00, 0xCA, 0x00, 0x66).with_le(256),
            Command::new(0x00, 0x20, 0x00, 0x81).with_data(vec![0x31; 6]),
            Command::new(0x00, 0xA4, 0x04, 0x00)
                .with_data(vec![1, 2, 3])
                .with_le(256),
            Command::new(0x00, 0xCB, 0x3F, 0xFF).with_le(65_536),
            Command::new(0x00, 0xDB, 0x3F, 0xFF).with_data(vec![7; 300]),
            Command::new(0x00, 0x2A, 0x00, 0xA2)
                .with_data(vec![9; 65_535])
                .with_le(1000),
        ];
        for cmd in cmds {
            for form in [LengthForm::Auto, LengthForm::Extended] {
                let bytes = cmd.encode(form).unwrap();
                assert_eq!(Command::decode(&bytes).unwrap(), cmd, "{form:?}");
            }
        }
    }

    #[test]
    fn known_encodings() {
        let c = Command::new(0x00, 0xB0, 0x00, 0x00).with_le(256);
        assert_eq!(c.encode(LengthForm::Short).unwrap(), [0, 0xB0, 0, 0, 0]);
        assert_eq!(
            c.encode(LengthForm::Extended).unwrap(),
            [0, 0xB0, 0, 0, 0, 1, 0]
        );
        let c = Command::new(0x80, 0xCA, 0x9F, 0x7F).with_le(65_536);
        assert_eq!(c.to_bytes().unwrap(), [0x80, 0xCA, 0x9F, 0x7F, 0, 0, 0]);
    }

    #[test]
    fn malformed_rejected() {
        assert_eq!(Command::decode(&[0, 1, 2]), Err(ApduError::TooShort));
        assert_eq!(
            Command::decode(&[0xFF, 0, 0, 0]),
            Err(ApduError::InvalidClass)
        );
        assert_eq!(
            Command::decode(&[0, 1, 2, 3, 5, 1, 2]),
            Err(ApduError::LengthMismatch)
        );
        assert_eq!(
            Command::decode(&[0, 1, 2, 3, 0, 0, 0, 1]),
            Err(ApduError::InvalidLength)
        );
        assert_eq!(
            Command::decode(&[0, 0xA4, 4, 0, 0, 7]),
            Err(ApduError::LengthMismatch)
        );
        assert_eq!(
            Command::decode(&[0, 1, 2, 3, 0, 0, 2, 1]),
            Err(ApduError::LengthMismatch)
        );
        assert!(Command::new(0, 0, 0, 0)
            .with_data(vec![0; 256])
            .encode(LengthForm::Short)
            .is_err());
    }

    #[test]
    fn chaining_splits_and_marks() {
        let cmd = Command::new(0x00, 0x2A, 0x00, 0xA2)
            .with_data((0..=255u8).cycle().take(600).collect::<Vec<_>>())
            .with_le(256);
        let chain = cmd.chain(255);
        assert_eq!(chain.len(), 3);
        assert!(chain[0].is_chained() && chain[1].is_chained() && !chain[2].is_chained());
        assert_eq!(chain[0].le, None);
        assert_eq!(chain[2].le, Some(256));
        let joined: Vec<u8> = chain.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, cmd.data);
    }

    #[test]
    fn response_split() {
        let r = Response::from_bytes(&[1, 2, 0x63, 0xC2]).unwrap();
        assert_eq!(r.data, [1, 2]);
        assert_eq!(r.status_word(), Status::RemainingRetries(2));
        assert_eq!(
            Response::from_bytes(&[0x90]),
            Err(ApduError::MissingStatusWord)
        );
    }
}
