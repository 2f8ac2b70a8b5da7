//! The byte-level link to a card: the [`Transport`] trait, its typed errors and
//! reader selection.
//!
//! A transport moves one command APDU to the card and brings back its response
//! APDU; it knows nothing about chaining, `61xx`, secure messaging or status
//! words — that is the [`Session`](crate::session::Session)'s job.
//!
//! # Exclusive access
//!
//! PC/SC gives exclusive access to a shared card through transactions. The
//! `pcsc` crate models a transaction as a value that mutably borrows the card,
//! so "begin" and "end" cannot be two separate trait methods without `unsafe`.
//! [`Transport::exclusive`] is therefore a scoped operation: the transport runs
//! the body with a transport that holds exclusive access, and releases it when
//! the body returns. [`with_exclusive`] adapts it to a closure with a result.

#[cfg(unix)]
pub mod modem;
#[cfg(feature = "pcsc")]
pub mod pcsc;
#[cfg(test)]
pub(crate) mod scripted;
#[cfg(feature = "sim")]
pub mod sim;

use core::fmt;

/// Errors of a [`Transport`] and of reader management.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The PC/SC daemon does not answer on `socket`.
    #[error(
        "the PC/SC service is not running (no pcscd answers at {socket}): start it with \
         `systemctl start pcscd` (or run `pcscd` as root); a client of a private pcscd \
         must set PCSCLITE_CSOCK_NAME to that daemon's socket"
    )]
    NoService {
        /// The socket the PC/SC library tried (`PCSCLITE_CSOCK_NAME` or the default).
        socket: String,
    },
    /// No reader, or no reader matching what was asked for.
    #[error("{}", no_reader_message(.pattern, .available))]
    NoReader {
        /// The name or pattern asked for, if any.
        pattern: Option<String>,
        /// The readers that exist.
        available: Vec<String>,
    },
    /// A reader pattern matches several readers.
    #[error("reader pattern '{pattern}' matches several readers: {}; be more specific", .matches.join(", "))]
    AmbiguousReader {
        /// The pattern asked for.
        pattern: String,
        /// The readers it matches.
        matches: Vec<String>,
    },
    /// The reader holds no card.
    #[error("no card in reader '{reader}'")]
    NoCard {
        /// The reader's name.
        reader: String,
    },
    /// The card was removed during the session.
    #[error("the card was removed")]
    CardRemoved,
    /// The card was reset (by another application, a reader event or a
    /// reconnection after a PC/SC daemon restart): its volatile state
    /// (selected applet, verified PIN, secure channel) is lost.
    #[error("the card was reset; its session state (selection, PIN, secure channel) is lost")]
    CardReset,
    /// Another application holds the card exclusively.
    #[error("the card is in exclusive use by another application")]
    SharingViolation,
    /// The operation timed out.
    #[error("timed out waiting for the card or reader")]
    Timeout,
    /// A blocking wait was cancelled.
    #[error("the operation was cancelled")]
    Cancelled,
    /// The card's answer is not a response APDU (shorter than its status word).
    #[error("malformed response from the card: {0} bytes, shorter than a status word")]
    MalformedResponse(usize),
    /// The card in the reader does not respond (mute or unpowered).
    #[error("the card in '{reader}' does not respond (mute or unpowered)")]
    Unresponsive {
        /// The reader's name.
        reader: String,
    },
    /// The reader could not exchange the APDU with the card
    /// (`SCARD_E_NOT_TRANSACTED`), typically because the card was removed.
    #[error(
        "the reader '{reader}' could not exchange the APDU with the card \
         (SCARD_E_NOT_TRANSACTED); the card may have been removed"
    )]
    NotTransacted {
        /// The reader's name.
        reader: String,
    },
    /// Any other PC/SC failure.
    #[cfg(feature = "pcsc")]
    #[error("PC/SC error {source:?} (0x{:08X}): {source}", *.source as u32)]
    Pcsc {
        /// The PC/SC error.
        #[source]
        source: ::pcsc::Error,
    },
    /// The modem behind the transport failed (other than by a timeout, which
    /// is [`TransportError::Timeout`]).
    #[cfg(unix)]
    #[error("{0}")]
    Modem(#[source] Box<modem::ModemError>),
    /// The transport cannot reset the card.
    #[error("{0}")]
    NoReset(NoReset),
    /// The card is not available to this transport (a shell that lost it).
    #[error("the card is not available")]
    CardUnavailable,
    /// The bytes given to a relaying transport are not a command APDU.
    #[error("not a command APDU: {0}")]
    NotACommand(#[source] dmsc_card_model::apdu::ApduError),
    /// The authority session a relaying transport sends through failed (the
    /// session's error, e.g. a `HostError`, is in [`SessionFailure::get`]).
    #[error("in the authority session: {0}")]
    AuthoritySession(#[source] SessionFailure),
    /// The authority session a relaying transport sends through was ended
    /// after `idle` without use.
    #[error("authority session ended after {} idle", whole_duration(*.idle))]
    SessionExpired {
        /// How long it had been idle.
        idle: core::time::Duration,
    },
}

/// Why a transport cannot reset its card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoReset {
    /// A modem's SIM: `AT+CSIM` has no reset.
    #[error("a modem's SIM cannot be reset through AT+CSIM")]
    ModemSim,
    /// A reset would end the authority session the transport sends through.
    #[error("a reset would end the authority session: log out first")]
    AuthoritySession,
}

/// The error of the session layer above a transport that relays through an
/// authority session, kept whole (compared by identity).
#[derive(Debug, Clone)]
pub struct SessionFailure(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl SessionFailure {
    /// Keeps `e`.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> SessionFailure {
        SessionFailure(std::sync::Arc::new(e))
    }

    /// The session's error (downcast it to its type).
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl PartialEq for SessionFailure {
    fn eq(&self, other: &SessionFailure) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionFailure {}

impl fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SessionFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A duration in whole seconds, as people write it (`6m`, `1h 5s`).
fn whole_duration(d: core::time::Duration) -> String {
    let whole = core::time::Duration::from_secs(d.as_secs());
    match jiff::SignedDuration::try_from(whole) {
        Ok(d) => format!("{d:#}"),
        Err(_) => format!("{}s", whole.as_secs()),
    }
}

fn no_reader_message(pattern: &Option<String>, available: &[String]) -> String {
    let list = if available.is_empty() {
        "no readers are connected".to_string()
    } else {
        format!("available: {}", available.join(", "))
    };
    match pattern {
        Some(p) => format!("no smart-card reader matches '{p}' ({list})"),
        None => format!("no smart-card reader found ({list})"),
    }
}

impl TransportError {
    /// Whether the card's volatile state was lost but the link works again:
    /// the session should select the applet again.
    pub fn is_reset(&self) -> bool {
        matches!(self, TransportError::CardReset)
    }
}

/// A reader and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    /// The reader's name as PC/SC reports it.
    pub name: String,
    /// Whether a card is present.
    pub card_present: bool,
    /// The ATR of the card, when one is present.
    pub atr: Option<Vec<u8>>,
}

/// A change of readers or cards reported by a reader monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderEvent {
    /// A reader appeared.
    ReaderAdded(String),
    /// A reader disappeared.
    ReaderRemoved(String),
    /// A card was inserted (or powered up) in a reader.
    CardInserted {
        /// The reader.
        reader: String,
        /// The card's ATR.
        atr: Vec<u8>,
    },
    /// The card was removed from a reader.
    CardRemoved {
        /// The reader.
        reader: String,
    },
}

impl fmt::Display for ReaderEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReaderEvent::ReaderAdded(r) => write!(f, "reader added: {r}"),
            ReaderEvent::ReaderRemoved(r) => write!(f, "reader removed: {r}"),
            ReaderEvent::CardInserted { reader, atr } => {
                write!(
                    f,
                    "card inserted in {reader} (ATR {})",
                    hex::encode_upper(atr)
                )
            }
            ReaderEvent::CardRemoved { reader } => write!(f, "card removed from {reader}"),
        }
    }
}

/// Picks one reader by a case-insensitive pattern.
///
/// A reader whose whole name equals the pattern (ignoring case) wins; otherwise
/// the pattern must be a substring of exactly one reader's name. An empty
/// pattern matches every reader, so it picks the only reader there is.
///
/// Errors: [`TransportError::NoReader`] listing the available readers when none
/// matches, [`TransportError::AmbiguousReader`] listing the matches when several do.
pub fn find_reader<'a>(
    readers: &'a [ReaderInfo],
    pattern: &str,
) -> Result<&'a ReaderInfo, TransportError> {
    let needle = pattern.to_lowercase();
    if let Some(exact) = readers.iter().find(|r| r.name.to_lowercase() == needle) {
        return Ok(exact);
    }
    let matches: Vec<&ReaderInfo> = readers
        .iter()
        .filter(|r| r.name.to_lowercase().contains(&needle))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(TransportError::NoReader {
            pattern: (!pattern.is_empty()).then(|| pattern.to_string()),
            available: readers.iter().map(|r| r.name.clone()).collect(),
        }),
        several => Err(TransportError::AmbiguousReader {
            pattern: pattern.to_string(),
            matches: several.iter().map(|r| r.name.clone()).collect(),
        }),
    }
}

/// A link that carries APDUs to one card.
///
/// Implementations: [`PcscCard`](crate::transport::pcsc::PcscCard) (PC/SC) and,
/// later, the in-process simulator. The trait is object safe; `Box<dyn
/// Transport>` implements it too.
///
/// Error contract: when the transport had to reconnect (after a reset, or after
/// the PC/SC daemon restarted) it reports [`TransportError::CardReset`] once,
/// without sending the APDU, so that the session selects the applet again.
pub trait Transport: Send {
    /// Sends one command APDU (already encoded) and returns the response APDU
    /// (data and status word).
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// The card's answer to reset (empty when unknown).
    fn atr(&self) -> Vec<u8>;

    /// Warm-resets the card (or reconnects with a reset): the card's volatile
    /// state is lost.
    fn reset(&mut self) -> Result<(), TransportError>;

    /// The reader's name (or a description of the backend).
    fn reader_name(&self) -> &str;

    /// Whether extended-length APDUs can travel over this link.
    fn supports_extended(&self) -> bool;

    /// Runs `body` with exclusive access to the card: no other application's
    /// APDU can come between the APDUs `body` sends through the transport it is
    /// given. Nested calls on that transport simply run the body.
    ///
    /// Returns an error when exclusive access could not be obtained (the body
    /// has then not run) or, after the body ran, when the link was lost during
    /// it and recovered ([`TransportError::CardReset`]) or not.
    fn exclusive(&mut self, body: &mut dyn FnMut(&mut dyn Transport))
        -> Result<(), TransportError>;
}

/// Forwards every call to the transport behind a pointer (`Box<T>`, `&mut T`).
macro_rules! forward_transport {
    ($($ptr:tt)*) => {
        impl<T: Transport + ?Sized> Transport for $($ptr)* {
            fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
                (**self).transmit(apdu)
            }
            fn atr(&self) -> Vec<u8> {
                (**self).atr()
            }
            fn reset(&mut self) -> Result<(), TransportError> {
                (**self).reset()
            }
            fn reader_name(&self) -> &str {
                (**self).reader_name()
            }
            fn supports_extended(&self) -> bool {
                (**self).supports_extended()
            }
            fn exclusive(
                &mut self,
                body: &mut dyn FnMut(&mut dyn Transport),
            ) -> Result<(), TransportError> {
                (**self).exclusive(body)
            }
        }
    };
}

forward_transport!(Box<T>);
forward_transport!(&mut T);

/// What happened to an [`exclusive`](Transport::exclusive) operation.
#[derive(Debug)]
pub struct ExclusiveOutcome<R> {
    /// The body's result, `None` when the body did not run.
    pub value: Option<R>,
    /// The transport's own error (access not obtained, or link lost during the body).
    pub error: Option<TransportError>,
}

/// Runs a closure with exclusive access and returns its value together with
/// the transport's verdict.
pub fn with_exclusive<T, R, F>(transport: &mut T, f: F) -> ExclusiveOutcome<R>
where
    T: Transport + ?Sized,
    F: FnOnce(&mut dyn Transport) -> R,
{
    let mut f = Some(f);
    let mut value = None;
    let result = transport.exclusive(&mut |t| {
        if let Some(f) = f.take() {
            value = Some(f(t));
        }
    });
    ExclusiveOutcome {
        value,
        error: result.err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed causes read as the messages did, and keep their sources.
    #[test]
    fn typed_causes_read_well_and_keep_their_sources() {
        use std::error::Error as _;
        let e = TransportError::SessionExpired {
            idle: core::time::Duration::from_millis(365_500),
        };
        assert_eq!(e.to_string(), "authority session ended after 6m 5s idle");
        assert_eq!(
            TransportError::NoReset(NoReset::AuthoritySession).to_string(),
            "a reset would end the authority session: log out first"
        );
        let inner = TransportError::CardRemoved;
        let e = TransportError::AuthoritySession(SessionFailure::new(inner.clone()));
        assert_eq!(
            e.to_string(),
            "in the authority session: the card was removed"
        );
        assert!(e.source().is_some());
        let TransportError::AuthoritySession(f) = &e else {
            unreachable!()
        };
        assert_eq!(f.get().downcast_ref::<TransportError>(), Some(&inner));
        assert_eq!(e.clone(), e);
        #[cfg(unix)]
        {
            let m = TransportError::Modem(Box::new(modem::ModemError::Closed));
            assert_eq!(m.to_string(), "modem: the device was closed");
            assert!(m.source().is_some());
        }
        #[cfg(feature = "pcsc")]
        {
            let p = TransportError::Pcsc {
                source: ::pcsc::Error::CardUnsupported,
            };
            assert!(p
                .to_string()
                .starts_with("PC/SC error CardUnsupported (0x8010001C): "));
            assert!(p.source().is_some());
        }
    }

    fn readers(names: &[&str]) -> Vec<ReaderInfo> {
        names
            .iter()
            .map(|n| ReaderInfo {
                name: n.to_string(),
                card_present: false,
                atr: None,
            })
            .collect()
    }

    #[test]
    fn find_reader_substring_exact_and_errors() {
        let r = readers(&[
            "DMSC vpcd 0 00 00",
            "DMSC vpcd 0 00 01",
            "Yubico YubiKey CCID 00 00",
        ]);
        assert_eq!(find_reader(&r, "yubikey").unwrap().name, r[2].name);
        assert_eq!(
            find_reader(&r, "dmsc VPCD 0 00 01").unwrap().name,
            r[1].name
        );
        match find_reader(&r, "vpcd") {
            Err(TransportError::AmbiguousReader { matches, .. }) => {
                assert_eq!(matches, vec![r[0].name.clone(), r[1].name.clone()])
            }
            other => panic!("{other:?}"),
        }
        let err = find_reader(&r, "omnikey").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("omnikey") && msg.contains("Yubico YubiKey CCID 00 00"),
            "{msg}"
        );
        assert!(matches!(
            find_reader(&[], ""),
            Err(TransportError::NoReader { .. })
        ));
        assert_eq!(find_reader(&r[2..], "").unwrap().name, r[2].name);
    }

    #[test]
    fn no_service_message_says_how_to_start() {
        let msg = TransportError::NoService {
            socket: "/run/pcscd/pcscd.comm".into(),
        }
        .to_string();
        assert!(msg.contains("systemctl start pcscd"));
        assert!(msg.contains("PCSCLITE_CSOCK_NAME"));
        assert!(msg.contains("/run/pcscd/pcscd.comm"));
    }
}
