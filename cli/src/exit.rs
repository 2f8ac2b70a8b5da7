//! Exit codes and how errors map to them.

use std::fmt;

use dmsc_host::policy::PolicyError;
use dmsc_host::{HostError, Status, TransportError};

/// The process exit codes (documented in `dmsc --help` and docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 0: success.
    Ok = 0,
    /// 1: any other error.
    Error = 1,
    /// 2: bad arguments or input.
    Usage = 2,
    /// 3: no PC/SC service, reader or card.
    NoCard = 3,
    /// 4: the card refused (security status, conditions of use, authority authentication).
    Refused = 4,
    /// 5: PIN or PUK blocked.
    Blocked = 5,
    /// 6: a MAC, signature or approval did not verify; a demo check failed.
    VerificationFailed = 6,
    /// 7: wrong PIN or PUK.
    WrongPin = 7,
    /// 8: object or key not found.
    NotFound = 8,
    /// 9: the user declined (bootstrap, unapproved firmware).
    Declined = 9,
}

impl Code {
    /// The short name used in JSON error documents.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::Error => "error",
            Code::Usage => "usage",
            Code::NoCard => "no-card",
            Code::Refused => "refused",
            Code::Blocked => "blocked",
            Code::VerificationFailed => "verification-failed",
            Code::WrongPin => "wrong-pin",
            Code::NotFound => "not-found",
            Code::Declined => "declined",
        }
    }
}

/// An error that carries its exit code explicitly.
#[derive(Debug)]
pub struct Coded {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error with exit code `code`.
pub fn coded(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// A usage error (exit code 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    coded(Code::Usage, message)
}

/// The exit code for a card error.
pub fn host_code(e: &HostError) -> Code {
    if e.wrong_pin_tries_left().is_some() {
        return Code::WrongPin;
    }
    match e {
        HostError::Card { status, .. } => match status {
            Status::OperationBlocked => Code::Blocked,
            Status::SecurityStatusNotSatisfied
            | Status::ConditionsOfUseNotSatisfied
            | Status::ReferenceDataNotUsable => Code::Refused,
            Status::NotFound | Status::KeyReferenceNotFound => Code::NotFound,
            Status::VerificationFailed => Code::VerificationFailed,
            _ => Code::Error,
        },
        HostError::Transport(t) => transport_code(t),
        HostError::CardChanged { .. } => Code::NoCard,
        _ => Code::Error,
    }
}

/// The exit code for a policy error; `None` for the card's refusal, whose code
/// comes from the [`HostError`] next in the chain.
pub fn policy_code(e: &PolicyError) -> Option<Code> {
    Some(match e {
        PolicyError::Card(_) => return None,
        PolicyError::Io { .. } => Code::Error,
        PolicyError::Invalid { .. }
        | PolicyError::NotUtf8
        | PolicyError::Key(_)
        | PolicyError::Malformed(_) => Code::Usage,
        PolicyError::BadSignature(_) => Code::VerificationFailed,
        PolicyError::CommandRefused(_) => Code::Refused,
        PolicyError::Missing(_) => Code::NotFound,
    })
}

/// The exit code for a transport error.
pub fn transport_code(e: &TransportError) -> Code {
    match e {
        TransportError::NoService { .. }
        | TransportError::NoReader { .. }
        | TransportError::AmbiguousReader { .. }
        | TransportError::NoCard { .. }
        | TransportError::CardRemoved
        | TransportError::SharingViolation => Code::NoCard,
        _ => Code::Error,
    }
}

/// The exit code of an error: the first explicit code or card error in its chain.
pub fn classify(err: &anyhow::Error) -> Code {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(h) = cause.downcast_ref::<HostError>() {
            return host_code(h);
        }
        if let Some(code) = cause.downcast_ref::<PolicyError>().and_then(policy_code) {
            return code;
        }
        if let Some(t) = cause.downcast_ref::<TransportError>() {
            return transport_code(t);
        }
    }
    Code::Error
}

/// The status word of the card's refusal in the error's chain, if a card refused.
pub fn card_sw(err: &anyhow::Error) -> Option<u16> {
    err.chain()
        .find_map(|c| c.downcast_ref::<HostError>())
        .and_then(HostError::sw)
}

/// What the user can do about the error, when the message alone does not say.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    match err.chain().find_map(|c| c.downcast_ref::<HostError>()) {
        Some(HostError::Card {
            command,
            status: Status::OperationBlocked,
        }) if !command.contains("RESET RETRY") => {
            Some("the user PIN is blocked; unblock it with the PUK: dmsc pin unblock")
        }
        Some(HostError::Card {
            status: Status::OperationBlocked,
            ..
        }) => Some("the PUK is blocked too; the PIN can no longer be unblocked"),
        _ => None,
    }
}

/// The error and its causes on one line, `a: b: c`, without repeating a cause
/// whose text the previous one already ends with.
pub fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || last.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_chain() {
        let e = anyhow::Error::new(HostError::card("VERIFY", 0x63C2)).context("verifying the PIN");
        assert_eq!(classify(&e), Code::WrongPin);
        let e = anyhow::Error::new(HostError::Transport(TransportError::CardRemoved))
            .context("reading");
        assert_eq!(classify(&e), Code::NoCard);
        assert_eq!(describe(&e), "reading: the card was removed");
        assert_eq!(classify(&usage("bad")), Code::Usage);
        assert_eq!(classify(&anyhow::anyhow!("x")), Code::Error);
    }

    #[test]
    fn the_cards_refusal_is_found_under_use_case_errors() {
        use dmsc_host::bootstrap::BootstrapError;
        use dmsc_host::firmware::FirmwareError;
        let e = anyhow::Error::new(BootstrapError::Card(HostError::card("PUT DATA", 0x6982)))
            .context("storing bootstrap key 1");
        assert_eq!(classify(&e), Code::Refused);
        assert_eq!(card_sw(&e), Some(0x6982));
        assert_eq!(
            describe(&e),
            "storing bootstrap key 1: PUT DATA: security status not satisfied (SW 6982)"
        );
        let e = anyhow::Error::new(PolicyError::Card(HostError::card("GET DATA", 0x6A82)));
        assert_eq!(classify(&e), Code::NotFound);
        assert_eq!(card_sw(&e), Some(0x6A82));
        let e = anyhow::Error::new(FirmwareError::Card(HostError::card("VERIFY", 0x63C1)));
        assert_eq!(classify(&e), Code::WrongPin);
        assert_eq!(describe(&e), "VERIFY: wrong PIN, 1 try left (SW 63C1)");
        let e = anyhow::Error::new(dmsc_host::uicc::UiccError::Card(HostError::card(
            "READ BINARY",
            0x6982,
        )));
        assert_eq!(classify(&e), Code::Refused);
        assert_eq!(card_sw(&e), Some(0x6982));
        assert_eq!(
            describe(&e),
            "READ BINARY: security status not satisfied (SW 6982)"
        );
        // A policy error that is not the card's has its own code and no SW.
        let e = anyhow::Error::new(PolicyError::CommandRefused(
            dmsc_host::policy::Refusal::Replay {
                counter: 1,
                last: 1,
            },
        ));
        assert_eq!(classify(&e), Code::Refused);
        assert_eq!(card_sw(&e), None);
    }
}
