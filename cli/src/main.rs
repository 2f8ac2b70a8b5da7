//! `dmsc`: the command-line front end of the dmsc toolkit.
//!
//! No protocol logic lives here: every card operation goes through
//! `dmsc-host` (sessions, SCP03, typed commands) and the `dmsc-card-model`
//! types. See docs/cli.md for the commands, exit codes and JSON schemas.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod common;
mod context;
mod demo;
mod exit;
mod output;
mod secrets;
mod sim_uicc;

use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::context::{CommandLine, Ctx};
use crate::exit::{classify, describe, usage, Code};

/// Exit status of a command whose standard output was closed by its reader
/// (`dmsc … | head -1`): what a shell reports for a process ended by SIGPIPE.
const CLOSED_STDOUT: u8 = 128 + 13;

/// Whether the error is a write to a standard output that its reader closed.
fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A closed standard output ends the command quietly, like any Unix tool:
/// `println!` reports it as a panic, which is turned into exit status 141
/// with no message. Every other panic keeps the default report.
fn end_quietly_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(CLOSED_STDOUT));
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    end_quietly_on_closed_stdout();
    let matches = match with_globals_shown_once(Cli::command()).try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            // Help and version go to stdout with code 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(Code::Usage as u8);
        }
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let json = cli.global.json;
    match run(cli, &matches) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) if is_closed_stdout(&err) => ExitCode::from(CLOSED_STDOUT),
        Err(err) => {
            let code = classify(&err);
            let mut message = describe(&err);
            if let Some(h) = exit::hint(&err) {
                message = format!("{message} ({h})");
            }
            eprintln!("error: {message}");
            if json {
                let _ = output::print_json(&serde_json::json!({
                    "error": {
                        "exit_code": code as u8,
                        "kind": code.name(),
                        "message": message,
                        "sw": exit::card_sw(&err).map(|sw| format!("{sw:04X}")),
                    }
                }));
            }
            ExitCode::from(code as u8)
        }
    }
}

/// The global options are listed once, in `dmsc --help`; every subcommand
/// carries them hidden (they are still accepted there, and still global) and
/// its help points to `dmsc --help`.
fn with_globals_shown_once(cmd: clap::Command) -> clap::Command {
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().hide(true))
        .collect();
    fn hide(cmd: clap::Command, globals: &[clap::Arg]) -> clap::Command {
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        let mut cmd = cmd;
        for name in names {
            cmd = cmd.mut_subcommand(name, |mut sub| {
                for a in globals {
                    sub = sub.arg(a.clone());
                }
                let pointer = "Global options (--sim, --reader, --json, -v, --scp-key-file, …): \
                               see `dmsc --help`.";
                let after = match sub.get_after_help() {
                    Some(h) => format!("{h}\n\n{pointer}"),
                    None => pointer.to_string(),
                };
                hide(sub.after_help(after), globals)
            });
        }
        cmd
    }
    hide(cmd, &globals)
}

/// Log output on stderr: `RUST_LOG` when set, else by `-v`/`-q`.
fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs the command; `Ok` carries the exit code of a command that reported
/// its own outcome (the demo).
fn run(cli: Cli, matches: &ArgMatches) -> Result<Code> {
    let pinned_clock = cli.global.now.is_some();
    let ctx = cli.global.into_ctx(matches)?;
    if let Command::Shell(args) = &cli.command {
        return cmd::shell::run(ctx, args, pinned_clock, &DMSC);
    }
    dispatch(ctx, &cli.command, matches)
}

/// Runs one command with resolved global options (also each line of `dmsc shell`).
fn dispatch(ctx: Ctx, command: &Command, matches: &ArgMatches) -> Result<Code> {
    match command {
        Command::Readers => cmd::info::readers(&ctx).map(|()| Code::Ok),
        Command::Info => cmd::info::info(&ctx).map(|()| Code::Ok),
        Command::Apdu(a) => cmd::apdu::run(&ctx, a),
        Command::Pin(c) => cmd::pin::run(&ctx, c),
        Command::Object(c) => cmd::object::run(&ctx, c),
        Command::Audit(a) => cmd::audit::run(&ctx, a),
        Command::Sim(c) => cmd::sim::run(&ctx, c, sub_value_from_command_line(matches, "port")),
        Command::Demo { keep } => demo::run(&ctx, *keep),
        Command::Completions(a) => cmd::docs::completions(a, Cli::command()),
        Command::Man(a) => cmd::docs::man(a, Cli::command()),
        Command::Bootstrap(c) => cmd::bootstrap::run(&ctx, c),
        Command::Firmware(c) => cmd::firmware::run(&ctx, c),
        Command::Mo(c) => cmd::mo::run(&ctx, c),
        Command::Refresh(a) => cmd::mo::refresh(&ctx, a),
        Command::Watch(a) => cmd::mo::watch(&ctx, a),
        Command::Ota(c) => cmd::ota::run(&ctx, c),
        Command::Policy(c) => cmd::policy::run(&ctx, c),
        Command::Acl(c) => cmd::acl::run(&ctx, c),
        Command::Authority(c) => cmd::authority::run(&ctx, c),
        Command::FailureLimit(a) => cmd::authority::failure_limit(&ctx, a),
        Command::Fleet(c) => cmd::fleet::run(&ctx, c),
        Command::Uicc(a) => cmd::uicc::run(&ctx, a),
        Command::Shell(_) => Err(usage("a shell cannot run inside a shell")),
    }
}

/// Whether `id` was given on the command line of the innermost subcommand
/// (false when that subcommand has no such argument).
fn sub_value_from_command_line(matches: &ArgMatches, id: &str) -> bool {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m.ids().any(|i| i.as_str() == id)
        && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
}

/// `dmsc`'s command line, as `dmsc shell` runs it line by line.
struct Dmsc;

static DMSC: Dmsc = Dmsc;

impl CommandLine for Dmsc {
    fn command(&self) -> clap::Command {
        with_globals_shown_once(Cli::command())
    }

    fn run(&self, matches: &ArgMatches, adapt: &dyn Fn(Ctx) -> Result<Ctx>) -> Result<Code> {
        let cli = Cli::from_arg_matches(matches).map_err(|e| usage(e.to_string()))?;
        if let Some(why) = refused_in_shell(&cli.command) {
            return Err(usage(why));
        }
        let ctx = adapt(cli.global.into_ctx(matches)?)?;
        dispatch(ctx, &cli.command, matches)
    }
}

/// Commands that do not act on the shell's one card.
fn refused_in_shell(command: &Command) -> Option<&'static str> {
    match command {
        Command::Shell(_) => Some("a shell cannot run inside a shell"),
        Command::Demo { .. } => Some("the demo runs on its own card: run `dmsc demo` outside"),
        Command::Fleet(_) => Some("fleet commands act on many cards: run them outside the shell"),
        Command::Watch { .. } => Some("watch follows a reader: run `dmsc watch` outside"),
        Command::Sim(cmd::sim::SimCommand::Serve { .. }) => {
            Some("sim serve attaches cards to pcscd: run it outside the shell")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::shell::Completion;

    fn completion() -> Completion {
        Completion::new(DMSC.command())
    }

    #[test]
    fn completion_comes_from_the_command_tree() {
        let c = completion();
        assert_eq!(c.candidates(&[], "lo"), vec!["login", "logout"]);
        assert!(c.candidates(&[], "").contains(&"object".to_string()));
        assert_eq!(c.candidates(&["object"], "g"), vec!["get"]);
        assert_eq!(c.candidates(&["set"], ""), vec!["idle-timeout"]);
        assert!(c
            .candidates(&["mo", "get"], "--f")
            .contains(&"--format".to_string()));
        // Hidden: the test clock and the global options of subcommands.
        assert!(c.candidates(&[], "adv").is_empty());
        assert!(!c.candidates(&["info"], "--").contains(&"--sim".to_string()));
    }
}
