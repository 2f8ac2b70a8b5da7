//! The resolved global options, and opening a card session with them.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ArgMatches;
use dmsc_host::card_model::commands::Pin;
use dmsc_host::card_model::scp03::SecurityLevel;
use dmsc_host::fleet::diversify::{CardAuthorityKeys, SoftMasterKeys};
use dmsc_host::fleet::hsm::HsmMasterKeys;
use dmsc_host::transport::sim::FileSimTransport;
use dmsc_host::{
    open_secure_channel, AuthorityKeySet, CardCommands, ChannelInfo, HostError, Session, Transport,
};

use crate::exit::{coded, usage, Code};
use crate::secrets::{read_hsm_pin, read_pin, KeySource, PinKind};

/// A session with a card over PC/SC or the in-process simulator.
pub type CardSession = Session<Box<dyn Transport>>;

/// The global options after resolving their sources (command line over environment).
pub struct Ctx {
    #[cfg_attr(not(feature = "pcsc"), allow(dead_code))]
    pub reader: Option<String>,
    pub sim: Option<PathBuf>,
    /// Whether `--sim` was given on the command line (not from `DMSC_SIM`).
    pub sim_on_command_line: bool,
    /// `--modem`: the card behind a cellular modem.
    pub modem: Option<ModemOptions>,
    pub json: bool,
    pub trace: bool,
    /// `-v` count: from 2 (`-vv`) on, each APDU is logged at debug level.
    pub verbose: u8,
    pub quiet: bool,
    pub keys: Option<KeySource>,
    /// `--master-key-file`: per-card keys derived from master keys.
    pub master_key_file: Option<PathBuf>,
    /// `--hsm-module` and `--hsm-token`: master keys in a PKCS#11 token.
    pub hsm: Option<(PathBuf, String)>,
    pub key_version: Option<u8>,
    pub level: SecurityLevel,
    pub pin_file: Option<PathBuf>,
    /// The clock every time-dependent decision reads.
    pub clock: Clock,
    /// The card `dmsc shell` opened once for all its commands.
    pub shell: Option<std::sync::Arc<dyn ShellCard>>,
}

/// `--modem PATH [--modem-cgla] [--modem-timeout S]`.
#[derive(Debug, Clone)]
pub struct ModemOptions {
    /// The modem's serial device.
    pub path: PathBuf,
    /// Logical channels through AT+CCHO / AT+CGLA / AT+CCHC.
    pub cgla: bool,
    /// How long to wait for each answer.
    pub timeout: std::time::Duration,
}

/// The whole command line, as `dmsc shell` runs it line by line: the shell
/// is a command module and sees no other, so `main` hands it this.
pub trait CommandLine: Sync {
    /// The command tree (`dmsc`'s, global options listed once).
    fn command(&self) -> clap::Command;
    /// Runs the command of one line's `matches`, in the context its global
    /// options give, passed through `adapt` (the shell's card, authority and
    /// clock); refuses commands that do not act on the shell's one card.
    fn run(&self, matches: &ArgMatches, adapt: &dyn Fn(Ctx) -> Result<Ctx>) -> Result<Code>;
}

/// A card opened once for many commands (`dmsc shell`): each command's
/// session runs over a transport it hands out, inside its authority session
/// when one is open.
pub trait ShellCard: Send + Sync {
    /// A transport to the shell's card.
    fn transport(&self) -> Box<dyn Transport>;
    /// The shell's authority session, when one is open.
    fn channel(&self) -> Option<ChannelInfo>;
}

/// The command's clock: the real time, or `--now` (`DMSC_NOW`) at the start
/// of the command running on with the monotonic clock. Tests choose their
/// instant with it; nothing they decide reads the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: jiff::Timestamp,
    started: std::time::Instant,
}

impl Clock {
    /// A clock reading `start` now (the real time when `None`).
    pub fn starting_at(start: Option<jiff::Timestamp>) -> Clock {
        Clock {
            start: start.unwrap_or_else(jiff::Timestamp::now),
            started: std::time::Instant::now(),
        }
    }

    /// The current instant, in whole seconds.
    pub fn now(&self) -> jiff::Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.started.elapsed())
            .unwrap_or(jiff::SignedDuration::ZERO);
        let t = self.start.checked_add(elapsed).unwrap_or(self.start);
        jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
    }
}

#[cfg(unix)]
fn open_modem(modem: &ModemOptions) -> Result<Box<dyn Transport>> {
    let t = dmsc_host::transport::modem::ModemTransport::open(&modem.path, modem.timeout)?
        .with_cgla(modem.cgla);
    Ok(Box::new(t))
}

#[cfg(not(unix))]
fn open_modem(modem: &ModemOptions) -> Result<Box<dyn Transport>> {
    Err(anyhow::anyhow!(
        "--modem {}: serial modems are supported on Unix only",
        modem.path.display()
    ))
}

impl Ctx {
    /// A note on stderr, unless `-q`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Whether the user can answer questions (stdin and stderr are terminals).
    pub fn interactive(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Opens the card: the simulated card of `--sim`, else the card behind
    /// the modem of `--modem`, else a PC/SC reader.
    pub fn open_card(&self) -> Result<CardSession> {
        if let Some(card) = &self.shell {
            return Ok(self.session(card.transport()));
        }
        let transport: Box<dyn Transport> =
            match (&self.sim, &self.modem) {
                (Some(path), _) => Box::new(FileSimTransport::open(path).with_context(|| {
                    format!("cannot open the simulated card {}", path.display())
                })?),
                (None, Some(modem)) => open_modem(modem)?,
                (None, None) => self.open_pcsc()?,
            };
        Ok(self.session(transport))
    }

    /// Wraps a transport in a session, with the APDU trace when asked for.
    pub fn session(&self, transport: Box<dyn Transport>) -> CardSession {
        let mut session = Session::new(transport);
        if self.trace {
            session.set_trace(Box::new(|e| eprintln!("{e}")));
        } else if self.verbose >= 2 {
            // -vv: every APDU (secrets redacted, as --trace) in the debug log.
            session.set_trace(Box::new(|e| tracing::debug!("{e}")));
        }
        session
    }

    #[cfg(not(feature = "pcsc"))]
    fn open_pcsc(&self) -> Result<Box<dyn Transport>> {
        Err(no_pcsc())
    }

    #[cfg(feature = "pcsc")]
    fn open_pcsc(&self) -> Result<Box<dyn Transport>> {
        let mut ctx = dmsc_host::PcscContext::establish()?;
        let readers = ctx.list_readers()?;
        let name = self.choose_reader(&readers)?;
        let card = ctx
            .connect(&name)
            .with_context(|| format!("cannot connect to the card in reader '{name}'"))?;
        Ok(Box::new(card))
    }

    /// Picks a reader by `--reader` (see [`pick_reader`]); several matches are
    /// resolved by a numbered prompt on a terminal, and are an error otherwise.
    #[cfg_attr(not(feature = "pcsc"), allow(dead_code))]
    pub fn choose_reader(&self, readers: &[dmsc_host::ReaderInfo]) -> Result<String> {
        let matches = match pick_reader(readers, self.reader.as_deref())? {
            Pick::One(name) => return Ok(name),
            Pick::Several(matches) => matches,
        };
        if !self.interactive() {
            let which = match &self.reader {
                Some(p) => format!("reader pattern '{p}' matches several readers"),
                None => format!(
                    "no --reader given and {} readers to choose from",
                    matches.len()
                ),
            };
            return Err(coded(
                Code::NoCard,
                format!(
                    "{which}: {}; choose one with --reader NAME (or DMSC_READER)",
                    matches.join(", ")
                ),
            ));
        }
        eprintln!("Several readers match; choose one:");
        for (i, name) in matches.iter().enumerate() {
            eprintln!("  {}) {name}", i + 1);
        }
        eprint!("Reader number: ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the reader number")?;
        let n: usize = line
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=matches.len()).contains(n))
            .ok_or_else(|| usage(format!("expected a number from 1 to {}", matches.len())))?;
        Ok(matches[n - 1].clone())
    }

    /// The authority key set, if keys were given.
    pub fn authority(&self) -> Result<Option<AuthorityKeySet>> {
        let Some(source) = &self.keys else {
            return Ok(None);
        };
        let keys = source.load()?.static_keys()?;
        Ok(Some(AuthorityKeySet {
            key_version: self.key_version.unwrap_or(0),
            keys,
        }))
    }

    /// The security level for authority sessions.
    pub fn security_level(&self) -> SecurityLevel {
        self.level
    }

    /// Opens an authority session with `authority` (from [`Ctx::authority`]).
    pub fn authenticate(
        &self,
        session: &mut CardSession,
        authority: &AuthorityKeySet,
    ) -> Result<ChannelInfo> {
        // In `dmsc shell` the session already runs in the shell's login.
        if let Some(info) = self.shell.as_ref().and_then(|c| c.channel()) {
            return Ok(info);
        }
        open_authority(session, authority, self.security_level())
    }

    /// The authority's keys for `what` on many cards: derived per card from
    /// `--master-key-file` (with a warning: development only), or the key set
    /// of `--scp-key-file` & co. for every card.
    pub fn card_authority(&self, what: &str) -> Result<Box<dyn CardAuthorityKeys>> {
        Ok(self.card_authority_installing(what, false)?.0)
    }

    /// Like [`Ctx::card_authority`]; with `install`, master keys may come with
    /// the key set the cards hold now (`--scp-key-file` & co., e.g. transport
    /// keys), returned second: the key set under which the cards get their
    /// own keys.
    pub fn card_authority_installing(
        &self,
        what: &str,
        install: bool,
    ) -> Result<(Box<dyn CardAuthorityKeys>, Option<AuthorityKeySet>)> {
        let option = match (&self.master_key_file, &self.hsm) {
            (None, None) => return Ok((Box::new(self.require_authority(what)?), None)),
            (Some(_), Some(_)) => {
                return Err(usage(
                    "give either --master-key-file or --hsm-module/--hsm-token, not both",
                ))
            }
            (Some(_), None) => "--master-key-file",
            (None, Some(_)) => "--hsm-module",
        };
        if self.keys.is_some() && !install {
            return Err(usage(format!(
                "give either {option} or the authority's own keys \
                 (--scp-key-file, --scp-keys, DMSC_SCP_KEYS), not both"
            )));
        }
        let Some(kvn) = self.key_version else {
            return Err(usage(format!(
                "{option} needs --key-version N: the key version of the master \
                 keys and of the card key sets derived from them"
            )));
        };
        let installer = if install { self.authority()? } else { None };
        if let Some((module, token)) = &self.hsm {
            let pin = read_hsm_pin(token)?;
            let hsm = HsmMasterKeys::open(module, token, &pin, kvn)
                .map_err(|e| coded(Code::Error, format!("{what}: HSM: {e}")))?;
            return Ok((Box::new(hsm), installer));
        }
        let Some(file) = &self.master_key_file else {
            return Err(usage("no master keys"));
        };
        let keys = KeySource::File(file.clone()).load()?.static_keys()?;
        self.note(
            "warning: master keys read from a file; they are in this host's memory \
             (development only: production keeps them in an HSM)",
        );
        Ok((Box::new(SoftMasterKeys::new(kvn, keys)), installer))
    }

    /// The authority key set; keys are required for `what`.
    pub fn require_authority(&self, what: &str) -> Result<AuthorityKeySet> {
        self.authority()?.ok_or_else(|| {
            if self.shell.is_some() {
                return usage(format!(
                    "{what} needs an authority: log in first (login AUTHORITY)"
                ));
            }
            usage(format!(
                "{what} needs an authority: give its SCP03 keys with --scp-key-file FILE, \
                 DMSC_SCP_KEYS or --scp-keys"
            ))
        })
    }

    /// The user PIN (from --pin-file, DMSC_PIN or a prompt).
    pub fn user_pin(&self) -> Result<Pin> {
        read_pin(PinKind::Pin, self.pin_file.as_deref())
    }

    /// Verifies the user PIN.
    pub fn verify_user(&self, session: &mut CardSession, pin: &Pin) -> Result<()> {
        let reader = session.transport().reader_name().to_string();
        session
            .verify_pin(pin)
            .with_context(|| format!("verifying the user PIN on {reader}"))
    }

    /// Who the session acts as, for messages.
    pub fn principal(authority: Option<&ChannelInfo>, user: bool) -> String {
        let mut who = Vec::new();
        if let Some(info) = authority {
            who.push(format!(
                "authority (key version 0x{:02X})",
                info.key_version
            ));
        }
        if user {
            who.push("user".into());
        }
        if who.is_empty() {
            "the device (no authority keys given)".into()
        } else {
            who.join(" + ")
        }
    }
}

/// The outcome of choosing a reader without asking anyone.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// Exactly this reader.
    One(String),
    /// These readers match equally well.
    Several(Vec<String>),
}

/// Chooses a reader: by a case-insensitive pattern (a whole name wins over
/// substrings); without a pattern, the only reader, else the only one holding
/// a card. No reader, or none matching, is an error listing the readers.
pub fn pick_reader(
    readers: &[dmsc_host::ReaderInfo],
    pattern: Option<&str>,
) -> Result<Pick, dmsc_host::TransportError> {
    use dmsc_host::TransportError;
    match dmsc_host::find_reader(readers, pattern.unwrap_or("")) {
        Ok(r) => Ok(Pick::One(r.name.clone())),
        Err(TransportError::AmbiguousReader { matches, .. }) => {
            if pattern.is_none() {
                let with_card: Vec<&dmsc_host::ReaderInfo> =
                    readers.iter().filter(|r| r.card_present).collect();
                if let [one] = with_card.as_slice() {
                    return Ok(Pick::One(one.name.clone()));
                }
            }
            Ok(Pick::Several(matches))
        }
        Err(e) => Err(e),
    }
}

/// Opens an SCP03 authority session, with an exit code that says why it failed.
pub fn open_authority(
    session: &mut CardSession,
    authority: &AuthorityKeySet,
    level: SecurityLevel,
) -> Result<ChannelInfo> {
    let kvn = match authority.key_version {
        0 => "the card's first key version".to_string(),
        k => format!("key version 0x{k:02X}"),
    };
    let message = format!(
        "authority authentication failed ({kvn}, security level {:02X})",
        level.bits()
    );
    open_secure_channel(session, authority, level).map_err(|e| match &e {
        // Wrong keys show as a card cryptogram mismatch or a refused EXTERNAL AUTHENTICATE.
        HostError::SecureMessaging { .. }
        | HostError::Card {
            status: dmsc_host::Status::SecurityStatusNotSatisfied,
            ..
        } => coded(Code::Refused, format!("{message}: {e}")),
        _ => anyhow::Error::new(e).context(message),
    })
}

/// The error when the binary was built without the `pcsc` feature.
#[cfg(not(feature = "pcsc"))]
pub fn no_pcsc() -> anyhow::Error {
    coded(
        Code::NoCard,
        "built without PC/SC support; rebuild with the default features (or use --sim PATH \
         for a simulated card)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmsc_host::{ReaderInfo, TransportError};

    fn readers(list: &[(&str, bool)]) -> Vec<ReaderInfo> {
        list.iter()
            .map(|(n, card)| ReaderInfo {
                name: n.to_string(),
                card_present: *card,
                atr: None,
            })
            .collect()
    }

    #[test]
    fn readers_are_picked_by_pattern_or_card() {
        let r = readers(&[("DMSC vpcd 0 00 00", false), ("DMSC vpcd 0 00 01", true)]);
        assert_eq!(
            pick_reader(&r, Some("00 00")).unwrap(),
            Pick::One("DMSC vpcd 0 00 00".into())
        );
        // No pattern: the only reader holding a card.
        assert_eq!(
            pick_reader(&r, None).unwrap(),
            Pick::One("DMSC vpcd 0 00 01".into())
        );
        assert_eq!(
            pick_reader(&r, Some("VPCD")).unwrap(),
            Pick::Several(vec!["DMSC vpcd 0 00 00".into(), "DMSC vpcd 0 00 01".into()])
        );
        assert!(matches!(
            pick_reader(&r, Some("yubikey")),
            Err(TransportError::NoReader { .. })
        ));
        assert!(matches!(
            pick_reader(&[], None),
            Err(TransportError::NoReader { .. })
        ));
    }
}
