//! `dmsc shell`: an interactive session on one card (docs/shell.md).
//!
//! The card is opened once. Each line is split into words (`shlex`), parsed by
//! the CLI's own clap parser and run by the CLI's dispatcher with a context
//! whose card is the shell's ([`ShellCard`]). `login AUTHORITY` opens an SCP03
//! session kept by the host's [`SessionManager`]; while it lasts, every
//! command runs inside it. The manager ends it after the idle time and limits
//! the authority sessions on the card across processes (lock files).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand};
use dmsc_host::card_model::apdu::{Command as Apdu, Response};
use dmsc_host::card_model::commands::SelectInfo;
use dmsc_host::session::manager::{
    SessionError, SessionId, SessionLimits, SessionManager, SlotDir,
};
use dmsc_host::session::relay::{relay, RelayError};
use dmsc_host::transport::{NoReset, SessionFailure};
use dmsc_host::{
    AuthorityKeySet, CardCommands, ChannelInfo, ExclusiveSession, HostError, Transport,
    TransportError,
};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Editor, Helper};
use zeroize::Zeroizing;

use crate::common::{parse_key_version, security_level_parser};
use crate::context::{open_authority, Clock, CommandLine, Ctx, ShellCard};
use crate::exit::{classify, coded, describe, hint, usage, Code};
use crate::secrets::KeySource;
use dmsc_host::card_model::scp03::SecurityLevel;

/// `dmsc shell` options.
#[derive(Debug, Args)]
#[command(
    after_help = "Type `help` in the shell for its own commands. Reading a script \
    from stdin (not a terminal), the shell stops at the first failing line and exits with \
    its code, naming the line; see docs/shell.md."
)]
pub struct ShellArgs {
    /// End an authority session unused for this long (e.g. 90s, 5m, 1h)
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// At most this many authority sessions on the card at once, counted across
    /// every shell using the same session directory (the card keeps one secure
    /// channel: two sessions at once end each other's)
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = parse_max_sessions)]
    pub max_sessions: usize,
    /// Where authority sessions are counted across processes
    /// [default: $XDG_RUNTIME_DIR/dmsc/sessions]
    #[arg(
        long,
        env = "DMSC_SESSION_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub session_dir: Option<PathBuf>,
    /// Reading a script: go on after a failing line (the exit code is the first failure's)
    #[arg(long)]
    pub keep_going: bool,
}

/// 1 to 1000.
fn parse_max_sessions(s: &str) -> Result<usize, String> {
    s.parse()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| "expected a number from 1 to 1000".to_string())
}

/// A duration: `90s`, `5m`, `1h 30m` (jiff's friendly format) or ISO 8601.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("'{s}' is not a duration: expected e.g. 90s, 5m or 1h"))?;
    Duration::try_from(d).map_err(|_| format!("'{s}' is negative"))
}

/// A duration as the shell prints it (`6m`, `1h 5s`).
fn show(d: Duration) -> String {
    let whole = Duration::from_secs(d.as_secs());
    match jiff::SignedDuration::try_from(whole) {
        Ok(d) => format!("{d:#}"),
        Err(_) => format!("{}s", whole.as_secs()),
    }
}

/// The shell's own commands (every other line is a `dmsc` command).
#[derive(Debug, Parser)]
#[command(name = "shell", no_binary_name = true, disable_help_subcommand = true)]
struct BuiltinLine {
    #[command(subcommand)]
    builtin: Builtin,
}

#[derive(Debug, Subcommand)]
enum Builtin {
    /// Open an authority session (SCP03) for the following commands
    #[command(
        after_help = "Keys: --scp-key-file here, else the shell's own authority \
        options (--scp-key-file, DMSC_SCP_KEYS, --scp-keys). The session ends after the \
        idle time, at `logout`, or when the shell ends."
    )]
    Login {
        /// The authority's name (the key set's name on the card)
        #[arg(value_name = "AUTHORITY")]
        authority: String,
        /// File with the authority keys: one line ENC:MAC:DEK (hex), or JSON
        #[arg(long, value_name = "FILE")]
        scp_key_file: Option<PathBuf>,
        /// Key version of the key set, hex (0x30) or decimal [default: the shell's, else 0]
        #[arg(long, value_name = "N", value_parser = parse_key_version)]
        key_version: Option<u8>,
        /// SCP03 security level [default: the shell's]
        #[arg(long, value_parser = security_level_parser(), value_name = "LEVEL")]
        security_level: Option<SecurityLevel>,
    },
    /// End the authority session: the following commands run as the device
    Logout,
    /// The card, the authority session, its idle time and the session count
    Status {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Change a setting
    #[command(subcommand)]
    Set(Setting),
    /// List the shell's commands and the card commands
    Help,
    /// End the shell
    Exit,
    /// End the shell
    Quit,
    /// Move the shell's clock forward (only with --now / DMSC_NOW: a test clock)
    #[command(hide = true)]
    Advance {
        #[arg(value_parser = parse_duration)]
        by: Duration,
    },
}

#[derive(Debug, Subcommand)]
enum Setting {
    /// End an authority session unused for this long (applies to an open one too)
    IdleTimeout {
        #[arg(value_name = "DURATION", value_parser = parse_duration)]
        value: Duration,
    },
}

/// The shell's clock for idle times: the monotonic clock, or with `--now` a
/// clock that stands still except for `advance`.
struct ShellClock {
    base: Instant,
    offset: Mutex<Duration>,
    pinned: bool,
}

impl ShellClock {
    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Instant {
        let at = if self.pinned {
            self.base
        } else {
            Instant::now()
        };
        at + self.offset()
    }
}

/// Where the login's keys came from (read again by each command that needs them).
enum LoginKeys {
    File(PathBuf),
    Inline {
        text: Zeroizing<String>,
        what: &'static str,
    },
}

impl LoginKeys {
    fn from_source(k: &KeySource) -> LoginKeys {
        match k {
            KeySource::File(p) => LoginKeys::File(p.clone()),
            KeySource::Inline { text, what } => LoginKeys::Inline {
                text: Zeroizing::new(text.to_string()),
                what,
            },
        }
    }

    fn source(&self) -> KeySource {
        match self {
            LoginKeys::File(p) => KeySource::File(p.clone()),
            LoginKeys::Inline { text, what } => KeySource::Inline {
                text: Zeroizing::new(text.to_string()),
                what,
            },
        }
    }
}

struct Login {
    id: SessionId,
    authority: String,
    info: ChannelInfo,
    keys: LoginKeys,
    level: SecurityLevel,
}

/// The card and its authority session, shared by the commands of the shell.
struct State {
    /// The transport while no authority session holds it.
    plain: Option<Box<dyn Transport>>,
    manager: SessionManager<Box<dyn Transport>>,
    login: Option<Login>,
    /// SELECT's answer, given to commands inside an authority session.
    select: SelectInfo,
    reader: String,
    extended: bool,
    atr: Vec<u8>,
    /// Why the last authority session ended, to be told before the next line.
    ended: Option<String>,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ShellCard for Shared {
    fn transport(&self) -> Box<dyn Transport> {
        let s = self.lock();
        Box::new(Handle {
            shared: self.clone(),
            reader: s.reader.clone(),
            extended: s.extended,
            atr: s.atr.clone(),
        })
    }

    fn channel(&self) -> Option<ChannelInfo> {
        self.lock().login.as_ref().map(|l| l.info.clone())
    }
}

fn host_to_transport(e: HostError) -> TransportError {
    match e {
        HostError::Transport(t) => t,
        other => TransportError::AuthoritySession(SessionFailure::new(other)),
    }
}

/// What [`SessionManager::with`] refuses with: the session expired or is gone
/// (`TooMany`, `WrongAuthority` and `Slots` are refusals to open one).
fn session_to_transport(e: SessionError) -> TransportError {
    match e {
        SessionError::Host(h) => host_to_transport(h),
        SessionError::Expired { idle, .. } => TransportError::SessionExpired { idle },
        other @ (SessionError::Unknown(_)
        | SessionError::TooMany { .. }
        | SessionError::WrongAuthority { .. }
        | SessionError::Slots { .. }) => {
            TransportError::AuthoritySession(SessionFailure::new(other))
        }
    }
}

/// One APDU inside the authority session ([`relay`]); a secure-messaging
/// failure, which ends the session on the card, sets `sm_failed`.
fn secured_apdu(
    apdu: &[u8],
    select: &SelectInfo,
    sm_failed: &mut bool,
    send: &mut dyn FnMut(&Apdu) -> Result<Response, HostError>,
) -> Result<Vec<u8>, TransportError> {
    relay(apdu, select, send).map_err(|e| {
        *sm_failed |= e.ends_channel();
        match e {
            RelayError::Card(h) => host_to_transport(h),
            RelayError::NotACommand(e) => TransportError::NotACommand(e),
        }
    })
}

impl State {
    /// After a command in the authority session: a session the card ended
    /// (another SELECT, a reset, a secure-messaging failure, e.g. because
    /// another application used the card in between) is over for the shell too.
    fn check_channel(&mut self, sm_failed: bool) {
        let Some(login) = &self.login else { return };
        let id = login.id;
        let secured = self
            .manager
            .with(id, |s| Ok(s.is_secured()))
            .unwrap_or(false);
        if !secured || sm_failed {
            let authority = login.authority.clone();
            self.login = None;
            if let Some(t) = self.manager.end(id) {
                self.plain = Some(t);
            }
            self.ended = Some(format!(
                "authority session of {authority} ended by the card{}; commands run as the device",
                if sm_failed {
                    " (secure messaging failed: another application may have used the card)"
                } else {
                    ""
                }
            ));
        }
        for ended in self.manager.expire_idle() {
            self.take_back(ended);
        }
    }

    fn take_back(&mut self, ended: dmsc_host::session::manager::Ended<Box<dyn Transport>>) {
        if self.login.as_ref().is_some_and(|l| l.id == ended.id) {
            self.login = None;
        }
        self.plain = Some(ended.transport);
        self.ended = Some(format!(
            "authority session ended after {} idle ({}); commands run as the device",
            show(ended.idle),
            ended.authority
        ));
    }
}

/// The transport each command of the shell gets.
struct Handle {
    shared: Shared,
    reader: String,
    extended: bool,
    atr: Vec<u8>,
}

fn no_card() -> TransportError {
    TransportError::CardUnavailable
}

impl Transport for Handle {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let mut state = self.shared.lock();
        let s = &mut *state;
        let mut sm_failed = false;
        let result = match &s.login {
            None => return s.plain.as_mut().ok_or_else(no_card)?.transmit(apdu),
            Some(login) => {
                let id = login.id;
                let select = s.select.clone();
                let manager = &mut s.manager;
                secured_apdu(apdu, &select, &mut sm_failed, &mut |cmd| {
                    manager
                        .with(id, |session| session.transmit(cmd))
                        .map_err(|e| match e {
                            SessionError::Host(h) => h,
                            other => HostError::Transport(session_to_transport(other)),
                        })
                })
            }
        };
        s.check_channel(sm_failed);
        result
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        let mut state = self.shared.lock();
        let s = &mut *state;
        if let Some(login) = s.login.take() {
            if let Some(t) = s.manager.end(login.id) {
                s.plain = Some(t);
            }
            s.ended = Some(format!(
                "authority session of {} ended: the card was reset",
                login.authority
            ));
        }
        s.plain.as_mut().ok_or_else(no_card)?.reset()
    }

    fn reader_name(&self) -> &str {
        &self.reader
    }

    fn supports_extended(&self) -> bool {
        self.extended
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        let mut state = self.shared.lock();
        let s = &mut *state;
        let Some(login) = &s.login else {
            return s.plain.as_mut().ok_or_else(no_card)?.exclusive(body);
        };
        let id = login.id;
        let select = s.select.clone();
        let (reader, extended, atr) = (self.reader.clone(), self.extended, self.atr.clone());
        let mut sm_failed = false;
        let result = s
            .manager
            .with(id, |session| {
                session.transaction(|x| {
                    let mut inside = InTransaction {
                        x,
                        select: &select,
                        reader: &reader,
                        extended,
                        atr: &atr,
                        sm_failed: &mut sm_failed,
                    };
                    body(&mut inside);
                    Ok(())
                })
            })
            .map_err(session_to_transport);
        s.check_channel(sm_failed);
        result
    }
}

/// The transport inside one exclusive transaction of the authority session.
struct InTransaction<'a, 'b> {
    x: &'a mut ExclusiveSession<'b>,
    select: &'a SelectInfo,
    reader: &'a str,
    extended: bool,
    atr: &'a [u8],
    sm_failed: &'a mut bool,
}

impl Transport for InTransaction<'_, '_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let x = &mut *self.x;
        secured_apdu(apdu, self.select, self.sm_failed, &mut |cmd| {
            x.transmit(cmd)
        })
    }

    fn atr(&self) -> Vec<u8> {
        self.atr.to_vec()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        Err(TransportError::NoReset(NoReset::AuthoritySession))
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

/// Global options a line may not change: the card, the authority and the clock
/// are the shell's.
const SHELL_OWNED: &[(&str, &str)] = &[
    ("reader", "--reader"),
    ("sim", "--sim"),
    ("scp_keys", "--scp-keys"),
    ("scp_key_file", "--scp-key-file"),
    ("key_version", "--key-version"),
    ("security_level", "--security-level"),
    ("now", "--now"),
];

fn from_line(m: &ArgMatches, id: &str) -> bool {
    let mut m = m;
    loop {
        if m.try_get_raw(id).is_ok() && m.value_source(id) == Some(ValueSource::CommandLine) {
            return true;
        }
        match m.subcommand() {
            Some((_, sub)) => m = sub,
            None => return false,
        }
    }
}

/// What a line asked for.
enum Outcome {
    Go,
    Exit,
}

struct Shell {
    ctx: Ctx,
    /// The command line whose commands the lines are.
    commands: &'static dyn CommandLine,
    card: Shared,
    clock: Arc<ShellClock>,
    /// The instant the shell started, for the commands' clock.
    started: jiff::Timestamp,
    max_sessions: usize,
    card_id: [u8; 16],
}

/// Runs `dmsc shell`; `pinned` is whether `--now`/`DMSC_NOW` gave a test clock;
/// `commands` parses and runs each line (the shell sees no other command module).
pub fn run(
    ctx: Ctx,
    args: &ShellArgs,
    pinned: bool,
    commands: &'static dyn CommandLine,
) -> Result<Code> {
    let mut session = ctx.open_card()?;
    let info = session.select().context("selecting the dmsc applet")?;
    session.clear_trace();
    let transport = session.into_transport();
    let clock = Arc::new(ShellClock {
        base: Instant::now(),
        offset: Mutex::new(Duration::ZERO),
        pinned,
    });
    let read = clock.clone();
    let slots = SlotDir::new(
        args.session_dir
            .clone()
            .unwrap_or_else(SlotDir::default_root),
    );
    let manager = SessionManager::with_clock(
        SessionLimits {
            idle_timeout: args.idle_timeout,
            max_sessions: args.max_sessions,
        },
        Arc::new(move || read.now()),
    )
    .with_slots(slots);
    let card_id = info.card_id;
    let card = Shared(Arc::new(Mutex::new(State {
        reader: transport.reader_name().to_string(),
        extended: transport.supports_extended(),
        atr: transport.atr(),
        plain: Some(transport),
        manager,
        login: None,
        select: info,
        ended: None,
    })));
    let started = ctx.clock.now();
    let mut shell = Shell {
        ctx,
        commands,
        card,
        clock,
        started,
        max_sessions: args.max_sessions,
        card_id,
    };
    let code = if std::io::stdin().is_terminal() {
        shell.interactive()
    } else {
        shell.script(args.keep_going)
    };
    shell.logout(false);
    code
}

impl Shell {
    fn interactive(&mut self) -> Result<Code> {
        let mut editor: Editor<Completion, DefaultHistory> =
            Editor::new().context("cannot set up line editing on this terminal")?;
        editor.set_helper(Some(Completion::new(self.commands.command())));
        eprintln!(
            "dmsc shell on card {} ({}); `help` lists the commands, `exit` ends",
            hex::encode_upper(self.card_id),
            self.card.lock().reader
        );
        loop {
            let prompt = match &self.card.lock().login {
                Some(l) => format!("dmsc {}> ", l.authority),
                None => "dmsc> ".to_string(),
            };
            let line = match editor.readline(&prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => return Ok(Code::Ok),
                Err(e) => return Err(e).context("cannot read a line"),
            };
            if !line.trim().is_empty() {
                let _ = editor.add_history_entry(line.as_str());
            }
            match self.line(&line) {
                Ok(Outcome::Exit) => return Ok(Code::Ok),
                Ok(Outcome::Go) => {}
                Err(e) => {
                    report(&e, None, self.ctx.json);
                }
            }
        }
    }

    fn script(&mut self, keep_going: bool) -> Result<Code> {
        let stdin = std::io::stdin();
        let mut first_failure = None;
        for (i, line) in stdin.lock().lines().enumerate() {
            let n = i + 1;
            let line = line.with_context(|| format!("cannot read line {n} of the script"))?;
            match self.line(&line) {
                Ok(Outcome::Exit) => break,
                Ok(Outcome::Go) => {}
                Err(e) => {
                    let code = report(&e, Some(n), self.ctx.json);
                    first_failure.get_or_insert(code);
                    if !keep_going {
                        break;
                    }
                }
            }
        }
        Ok(first_failure.unwrap_or(Code::Ok))
    }

    /// Tells why the authority session ended, once.
    fn tell_ended(&self) {
        let mut state = self.card.lock();
        for ended in state.manager.expire_idle() {
            state.take_back(ended);
        }
        if let Some(why) = state.ended.take() {
            eprintln!("{why}");
        }
    }

    fn line(&mut self, line: &str) -> Result<Outcome> {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(Outcome::Go);
        }
        let words = shlex::split(trimmed).ok_or_else(|| usage("unbalanced quotes"))?;
        let Some(first) = words.first() else {
            return Ok(Outcome::Go);
        };
        self.tell_ended();
        let builtins = BuiltinLine::command();
        if builtins.find_subcommand(first).is_some() {
            let parsed = match BuiltinLine::try_parse_from(&words) {
                Ok(p) => p,
                Err(e) => return clap_outcome(e),
            };
            return self.builtin(parsed.builtin);
        }
        let matches = match self
            .commands
            .command()
            .no_binary_name(true)
            .try_get_matches_from(&words)
        {
            Ok(m) => m,
            Err(e) => return clap_outcome(e),
        };
        for (id, flag) in SHELL_OWNED {
            if from_line(&matches, id) {
                return Err(usage(format!(
                    "{flag} is the shell's: give it to `dmsc shell`, or use `login` for an \
                     authority"
                )));
            }
        }
        let code = self.commands.run(&matches, &|ctx| self.line_ctx(ctx))?;
        self.tell_ended();
        if code == Code::Ok {
            Ok(Outcome::Go)
        } else {
            Err(coded(
                code,
                format!("{first} ended with exit code {}", code as u8),
            ))
        }
    }

    /// The context of one command: the line's output options, the shell's
    /// card, authority and clock.
    fn line_ctx(&self, mut ctx: Ctx) -> Result<Ctx> {
        let shell = &self.ctx;
        ctx.reader = shell.reader.clone();
        ctx.sim = shell.sim.clone();
        ctx.sim_on_command_line = shell.sim_on_command_line;
        ctx.json |= shell.json;
        ctx.trace |= shell.trace;
        ctx.verbose = ctx.verbose.max(shell.verbose);
        ctx.quiet |= shell.quiet;
        if ctx.pin_file.is_none() {
            ctx.pin_file = shell.pin_file.clone();
        }
        let offset = jiff::SignedDuration::try_from(self.clock.offset())
            .unwrap_or(jiff::SignedDuration::ZERO);
        let now = if self.clock.pinned {
            self.started
        } else {
            shell.clock.now()
        };
        ctx.clock = Clock::starting_at(Some(now.checked_add(offset).unwrap_or(now)));
        let state = self.card.lock();
        match &state.login {
            Some(login) => {
                ctx.keys = Some(login.keys.source());
                ctx.key_version = Some(login.info.key_version);
                ctx.level = login.level;
            }
            None => {
                ctx.keys = None;
                ctx.key_version = None;
                ctx.level = shell.level;
            }
        }
        drop(state);
        ctx.shell = Some(Arc::new(self.card.clone()));
        Ok(ctx)
    }

    fn builtin(&mut self, b: Builtin) -> Result<Outcome> {
        match b {
            Builtin::Exit | Builtin::Quit => return Ok(Outcome::Exit),
            Builtin::Help => self.help(),
            Builtin::Login {
                authority,
                scp_key_file,
                key_version,
                security_level,
            } => self.login(&authority, scp_key_file, key_version, security_level)?,
            Builtin::Logout => self.logout(true),
            Builtin::Status { json } => self.status(json || self.ctx.json)?,
            Builtin::Set(Setting::IdleTimeout { value }) => {
                self.card.lock().manager.set_idle_timeout(value);
                self.ctx.note(&format!("idle timeout: {}", show(value)));
            }
            Builtin::Advance { by } => {
                if !self.clock.pinned {
                    return Err(usage(
                        "advance moves a test clock: it needs --now (or DMSC_NOW)",
                    ));
                }
                let mut offset = self.clock.offset.lock().unwrap_or_else(|e| e.into_inner());
                *offset += by;
            }
        }
        Ok(Outcome::Go)
    }

    fn help(&self) {
        println!("Shell commands:");
        for sub in BuiltinLine::command().get_subcommands() {
            if sub.is_hide_set() {
                continue;
            }
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            println!("  {:<16}{about}", sub.get_name());
        }
        println!("Card commands (as `dmsc COMMAND`, without `dmsc`; COMMAND --help for more):");
        for sub in self.commands.command().get_subcommands() {
            if sub.is_hide_set() {
                continue;
            }
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            let about = about.lines().next().unwrap_or_default().to_string();
            println!("  {:<16}{about}", sub.get_name());
        }
    }

    fn login(
        &mut self,
        authority: &str,
        key_file: Option<PathBuf>,
        key_version: Option<u8>,
        level: Option<SecurityLevel>,
    ) -> Result<()> {
        let keys = match (key_file, &self.ctx.keys) {
            (Some(file), _) => LoginKeys::File(file),
            (None, Some(source)) => LoginKeys::from_source(source),
            (None, None) => {
                return Err(usage(format!(
                    "login {authority} needs the authority's SCP03 keys: login {authority} \
                     --scp-key-file FILE, or start the shell with --scp-key-file or DMSC_SCP_KEYS"
                )))
            }
        };
        let key_set = AuthorityKeySet {
            key_version: key_version.or(self.ctx.key_version).unwrap_or(0),
            keys: keys.source().load()?.static_keys()?,
        };
        let level = level.unwrap_or(self.ctx.level);
        let logged_in = self.card.lock().login.is_some();
        if logged_in {
            self.logout(true);
        }
        let mut state = self.card.lock();
        let s = &mut *state;
        let transport = s.plain.take().ok_or_else(|| anyhow::anyhow!(no_card()))?;
        let mut session = self.ctx.session(transport);
        let card_id = match session.select() {
            Ok(info) => info.card_id,
            Err(e) => {
                s.plain = Some(session.into_transport());
                return Err(e).context("selecting the dmsc applet");
            }
        };
        let reservation = match s.manager.reserve(&card_id) {
            Ok(r) => r,
            Err(e) => {
                s.plain = Some(session.into_transport());
                return Err(coded(Code::Refused, format!("login {authority}: {e}")));
            }
        };
        let info = match open_authority(&mut session, &key_set, level) {
            Ok(info) => info,
            Err(e) => {
                s.plain = Some(session.into_transport());
                return Err(e.context(format!("login {authority}")));
            }
        };
        // The commands' own sessions show their APDUs (in plain) with --trace.
        session.clear_trace();
        if let Some(select) = session.select_info() {
            s.select = select.clone();
        }
        match s
            .manager
            .adopt(reservation, session, authority, info.key_version)
        {
            Ok(id) => {
                s.login = Some(Login {
                    id,
                    authority: authority.to_string(),
                    info: info.clone(),
                    keys,
                    level,
                });
            }
            Err((e, transport)) => {
                s.plain = Some(transport);
                return Err(coded(Code::Refused, format!("login {authority}: {e}")));
            }
        }
        let timeout = s.manager.limits().idle_timeout;
        drop(state);
        self.ctx.note(&format!(
            "logged in as {authority} (key version 0x{:02X}); the session ends after {} idle",
            info.key_version,
            show(timeout)
        ));
        Ok(())
    }

    fn logout(&mut self, say: bool) {
        let mut state = self.card.lock();
        let s = &mut *state;
        let Some(login) = s.login.take() else {
            drop(state);
            if say {
                self.ctx.note("not logged in");
            }
            return;
        };
        if let Some(t) = s.manager.end(login.id) {
            s.plain = Some(t);
        }
        drop(state);
        if say {
            self.ctx.note(&format!("logged out ({})", login.authority));
        }
    }

    fn status(&self, json: bool) -> Result<()> {
        let state = self.card.lock();
        let limits = state.manager.limits();
        let login = state.login.as_ref().map(|l| {
            let idle = state.manager.idle(l.id).unwrap_or_default();
            // The number the card writes into this session's audit entries.
            let card_session = state.manager.card_session(l.id).map(|n| format!("{n:06X}"));
            (l.authority.clone(), l.info.key_version, idle, card_session)
        });
        let in_use = match state.manager.slots() {
            Some(slots) => Some(slots.in_use(&self.card_id, self.max_sessions)?),
            None => None,
        };
        let dir = state.manager.slots().map(|s| s.card_dir(&self.card_id));
        let reader = state.reader.clone();
        drop(state);
        if json {
            crate::output::print_json(&serde_json::json!({
                "card_id": hex::encode_upper(self.card_id),
                "reader": reader,
                "authority": login.as_ref().map(|l| &l.0),
                "key_version": login.as_ref().map(|l| l.1),
                "idle_seconds": login.as_ref().map(|l| l.2.as_secs()),
                "card_session": login.as_ref().and_then(|l| l.3.clone()),
                "idle_timeout_seconds": limits.idle_timeout.as_secs(),
                "sessions_in_use": in_use,
                "max_sessions": limits.max_sessions,
                "session_dir": dir.map(|d| d.display().to_string()),
            }))?;
            return Ok(());
        }
        println!(
            "card:         {} ({reader})",
            hex::encode_upper(self.card_id)
        );
        match login {
            Some((authority, kvn, idle, card_session)) => println!(
                "logged in:    {authority} (key version 0x{kvn:02X}{}), idle {}",
                card_session
                    .map(|n| format!(", card session {n} in the audit log"))
                    .unwrap_or_default(),
                show(idle)
            ),
            None => println!("logged in:    no (commands run as the device)"),
        }
        println!("idle timeout: {}", show(limits.idle_timeout));
        match (in_use, dir) {
            (Some(n), Some(dir)) => println!(
                "sessions:     {n} of at most {} on this card ({})",
                limits.max_sessions,
                dir.display()
            ),
            _ => println!("sessions:     at most {}", limits.max_sessions),
        }
        Ok(())
    }
}

/// Help and version are printed; any other parse error is a usage error.
fn clap_outcome(e: clap::Error) -> Result<Outcome> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            Ok(Outcome::Go)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Err(usage(e.render().to_string())),
        _ => Err(usage(e.render().to_string().trim_end().to_string())),
    }
}

/// Prints an error as `dmsc` does, naming the script line; returns its code.
fn report(err: &anyhow::Error, line: Option<usize>, json: bool) -> Code {
    let code = classify(err);
    let mut message = describe(err);
    if let Some(h) = hint(err) {
        message = format!("{message} ({h})");
    }
    let message = message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_string();
    match line {
        Some(n) => eprintln!("error: line {n}: {message}"),
        None => eprintln!("error: {message}"),
    }
    if json {
        let _ = crate::output::print_json(&serde_json::json!({
            "error": {
                "exit_code": code as u8,
                "kind": code.name(),
                "message": message,
                "line": line,
                "sw": crate::exit::card_sw(err).map(|sw| format!("{sw:04X}")),
            }
        }));
    }
    code
}

/// Completion of command names, subcommands and options from the clap trees.
pub struct Completion {
    cli: clap::Command,
    builtins: clap::Command,
}

impl Completion {
    /// Completes the shell's own commands and those of `cli`.
    pub fn new(cli: clap::Command) -> Completion {
        Completion {
            cli,
            builtins: BuiltinLine::command(),
        }
    }

    /// The completions of `partial` after the words `before`.
    pub fn candidates(&self, before: &[&str], partial: &str) -> Vec<String> {
        let roots = [&self.cli, &self.builtins];
        let mut words = before.iter().filter(|w| !w.starts_with('-'));
        let mut cmd: Option<&clap::Command> = None;
        if let Some(first) = words.next() {
            cmd = roots.iter().find_map(|r| r.find_subcommand(first));
            if cmd.is_none() {
                return Vec::new();
            }
            for w in words {
                match cmd.and_then(|c| c.find_subcommand(w)) {
                    Some(sub) => cmd = Some(sub),
                    None => break,
                }
            }
        }
        let mut out: Vec<String> = Vec::new();
        if partial.starts_with('-') {
            let args = match cmd {
                Some(c) => c.get_arguments().collect::<Vec<_>>(),
                None => Vec::new(),
            };
            for a in args {
                if a.is_hide_set() {
                    continue;
                }
                if let Some(long) = a.get_long() {
                    out.push(format!("--{long}"));
                }
            }
        } else {
            let subs: Vec<&clap::Command> = match cmd {
                Some(c) => c.get_subcommands().collect(),
                None => roots.iter().flat_map(|r| r.get_subcommands()).collect(),
            };
            for s in subs {
                if !s.is_hide_set() && s.get_name() != "help" {
                    out.push(s.get_name().to_string());
                }
            }
        }
        out.retain(|c| c.starts_with(partial));
        out.sort();
        out.dedup();
        out
    }
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let upto = line.get(..pos).unwrap_or(line);
        let start = upto.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let partial = &upto[start..];
        let before: Vec<&str> = upto[..start].split_whitespace().collect();
        let found = self
            .candidates(&before, partial)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("five").is_err());
        assert_eq!(show(Duration::from_secs(360)), "6m");
    }
}
