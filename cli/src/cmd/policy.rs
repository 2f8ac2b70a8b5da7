//! `dmsc policy …`: the portable enterprise policy (docs/policy.md).
//!
//! Authority side: `put` (sign and store), `command` (sign an administrator's
//! command). Device side: `show`, `eval`, `next-change`, `timeline`,
//! `enforce [--watch]`, `accept`. The logic lives in `dmsc_host::policy`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use dmsc_host::policy::card::{put_policy, read_verified, VerifiedPolicy};
use dmsc_host::policy::device::{accept_command, enforce, CommandState, Report};
use dmsc_host::policy::engine::{timeline, Segment};
use dmsc_host::policy::signing::{
    load_signing_key, policy_digest, CommandStatement, SignedCommand,
};
use dmsc_host::policy::watch::{watch, WatchClock, WatchOptions};
use dmsc_host::policy::{
    evaluate, next_change, next_reevaluation, Context, Decision, Policy, Position, State,
};
use dmsc_host::CardCommands;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde_json::json;

use crate::context::Ctx;
use crate::exit::{usage, Code};
use crate::output::print_json;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate, sign (enterprise key) and store a policy on the card (an authority)
    #[command(
        after_help = "Needs the authority's SCP03 keys. The enterprise public key is \
        stored as approver:enterprise the first time; a card holding another key refuses \
        unless --replace-key. Nothing is written when the policy does not validate."
    )]
    Put {
        /// The policy file (TOML, docs/policy.md)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The enterprise P-256 private key (PEM or DER, SEC1 or PKCS#8)
        #[arg(long, value_name = "KEY")]
        sign_key: PathBuf,
        /// Replace a different enterprise key on the card
        #[arg(long)]
        replace_key: bool,
    },
    /// Show the card's policy after the card verified its signature (or a policy file)
    Show {
        #[command(flatten)]
        source: Source,
    },
    /// Decide every resource now (or --at TIME) and say which rule decided
    Eval {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        situation: Situation,
    },
    /// When the decisions change next
    NextChange {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        situation: Situation,
    },
    /// A week grid of which resources are on or off (hours across, resources down)
    Timeline {
        #[command(flatten)]
        source: Source,
        /// First day (YYYY-MM-DD, in the display time zone) [default: today]
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// Number of days
        #[arg(long, default_value_t = 7, value_name = "N")]
        days: u16,
        /// Display time zone [default: the policy's]
        #[arg(long, value_name = "ZONE")]
        tz: Option<String>,
        /// Where the device is (LAT,LON in degrees)
        #[arg(long, value_name = "LAT,LON", allow_hyphen_values = true)]
        location: Option<String>,
        /// The network the device is on
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
    },
    /// Apply the card's policy to a device folder and write the report for the DM server
    #[command(after_help = "Writes DIR/policy/resources.json (resource states) and \
        DIR/policy/report.json (decisions applied, failures). A policy whose signature \
        does not verify with the card's enterprise key is refused: nothing is applied, \
        the report says why, exit code 6.")]
    Enforce {
        /// The device folder
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        #[command(flatten)]
        situation: Situation,
        /// Keep running: apply again at each change and when the card's policy changes
        #[arg(long, conflicts_with = "at")]
        watch: bool,
        /// With --watch: how often to look at the card, in seconds
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        poll: u64,
        /// With --watch: stop after this many applications (for tests)
        #[arg(long, hide = true)]
        max_runs: Option<u32>,
    },
    /// Sign an administrator's command: enable or disable a resource on devices
    #[command(
        after_help = "The command names the policy it is for (from --policy-file, \
        else the card's verified policy), a counter above every counter the device \
        accepted before (default: Unix time in milliseconds) and a deadline for its \
        acceptance (--valid-for). Written to --out or stdout; with --device it is \
        checked against the card's enterprise key, recorded and applied at once."
    )]
    Command {
        /// enable or disable
        #[arg(value_name = "ACTION", value_parser = ["enable", "disable"])]
        action: String,
        /// The resource (camera, bluetooth, app:<id>, …)
        #[arg(value_name = "RESOURCE")]
        resource: String,
        /// The enterprise P-256 private key
        #[arg(long, value_name = "KEY")]
        sign_key: PathBuf,
        /// In force until TIME (RFC 3339, YYYY-MM-DDTHH:MM in the policy's zone, or +DURATION such as +2h)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// The counter [default: Unix time in milliseconds]
        #[arg(long, value_name = "N")]
        counter: Option<u64>,
        /// How long devices may accept it (e.g. 24h, 30m)
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        valid_for: String,
        /// The policy the command is for [default: the card's]
        #[arg(long, value_name = "FILE")]
        policy_file: Option<PathBuf>,
        /// Write the signed command here
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Apply it to this device folder now (checked against the card)
        #[arg(long, value_name = "DIR")]
        device: Option<PathBuf>,
    },
    /// Accept a signed command on the device: check it with the card's key, record it, apply
    Accept {
        /// The signed command (JSON, from `dmsc policy command --out`)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The device folder
        #[arg(long, value_name = "DIR")]
        device: PathBuf,
        #[command(flatten)]
        situation: Situation,
    },
}

/// Where the policy comes from.
#[derive(Debug, Args)]
pub struct Source {
    /// Read this policy file instead of the card (no signature involved)
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Include the device's recorded commands from DIR/policy/commands.json
    #[arg(long, value_name = "DIR")]
    device: Option<PathBuf>,
}

/// What the device knows.
#[derive(Debug, Args)]
pub struct Situation {
    /// The instant (RFC 3339, or YYYY-MM-DDTHH:MM in the policy's zone) [default: now]
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Where the device is (LAT,LON in degrees) [default: unknown]
    #[arg(long, value_name = "LAT,LON", allow_hyphen_values = true)]
    location: Option<String>,
    /// The network the device is on [default: unknown]
    #[arg(long, value_name = "NAME")]
    network: Option<String>,
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn parse_file(path: &Path) -> Result<(Policy, String)> {
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| usage(format!("{}: the policy is not UTF-8 text", path.display())))?;
    let policy = Policy::parse(&text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok((policy, text))
}

/// The policy from `--file`, or the card's verified one.
fn load(ctx: &Ctx, source: &Source) -> Result<(Policy, Option<VerifiedPolicy>)> {
    match &source.file {
        Some(f) => Ok((parse_file(f)?.0, None)),
        None => {
            let mut card = ctx.open_card()?;
            let v = read_verified(&mut card)?;
            Ok((v.policy.clone(), Some(v)))
        }
    }
}

/// Parses a time: RFC 3339, a civil date-time in `tz`, or `+DURATION` from now.
fn parse_time(s: &str, tz: &TimeZone, now: Timestamp) -> Result<Timestamp> {
    if let Some(d) = s.strip_prefix('+') {
        let d: SignedDuration = d
            .parse()
            .map_err(|_| usage(format!("'{s}': expected +DURATION such as +2h or +30m")))?;
        return now
            .checked_add(d)
            .map_err(|_| usage(format!("'{s}' is out of range")));
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let dt: DateTime = s.parse().map_err(|_| {
        usage(format!(
            "'{s}' is not a time: use RFC 3339 (2026-11-23T10:00:00Z), YYYY-MM-DDTHH:MM in the \
             policy's time zone, or +DURATION"
        ))
    })?;
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .map_err(|e| usage(format!("'{s}': {e}")))
}

fn policy_tz(p: &Policy) -> TimeZone {
    TimeZone::get(&p.timezone).unwrap_or(TimeZone::UTC)
}

/// The situation to decide for; `now` is the command's clock reading.
fn situation(
    s: &Situation,
    tz: &TimeZone,
    device: Option<&Path>,
    digest: Option<&str>,
    now: Timestamp,
) -> Result<Context> {
    let time = match &s.at {
        Some(t) => parse_time(t, tz, now)?,
        None => now,
    };
    let location = match &s.location {
        Some(l) => Some(
            l.parse::<Position>()
                .map_err(|e| usage(format!("--location: {e}")))?,
        ),
        None => None,
    };
    let overrides = match (device, digest) {
        (Some(dir), Some(d)) => CommandState::load(dir)?.overrides_for(d),
        _ => Vec::new(),
    };
    Ok(Context {
        time,
        location,
        network: s.network.clone(),
        overrides,
    })
}

/// Runs a `policy` subcommand.
pub fn run(ctx: &Ctx, cmd: &PolicyCommand) -> Result<Code> {
    match cmd {
        PolicyCommand::Put {
            file,
            sign_key,
            replace_key,
        } => put(ctx, file, sign_key, *replace_key)?,
        PolicyCommand::Show { source } => show(ctx, source)?,
        PolicyCommand::Eval {
            source,
            situation: s,
        } => eval(ctx, source, s)?,
        PolicyCommand::NextChange {
            source,
            situation: s,
        } => next(ctx, source, s)?,
        PolicyCommand::Timeline {
            source,
            from,
            days,
            tz,
            location,
            network,
        } => grid(
            ctx,
            source,
            from.as_deref(),
            *days,
            tz.as_deref(),
            location,
            network,
        )?,
        PolicyCommand::Enforce {
            device,
            situation: s,
            watch,
            poll,
            max_runs,
        } => {
            if *watch {
                return watch_loop(ctx, device, s, *poll, *max_runs);
            }
            return enforce_once(ctx, device, s).map(|_| Code::Ok);
        }
        PolicyCommand::Command {
            action,
            resource,
            sign_key,
            until,
            counter,
            valid_for,
            policy_file,
            out,
            device,
        } => command(
            ctx,
            &CommandArgs {
                action,
                resource,
                sign_key,
                until: until.as_deref(),
                counter: *counter,
                valid_for,
                policy_file: policy_file.as_deref(),
                out: out.as_deref(),
                device: device.as_deref(),
            },
        )?,
        PolicyCommand::Accept {
            file,
            device,
            situation: s,
        } => {
            let cmd: SignedCommand = serde_json::from_slice(&read_file(file)?)
                .map_err(|e| usage(format!("{}: not a signed command: {e}", file.display())))?;
            accept(ctx, &cmd, device, s)?
        }
    }
    Ok(Code::Ok)
}

fn put(ctx: &Ctx, file: &Path, sign_key: &Path, replace_key: bool) -> Result<()> {
    // Everything is checked before the card is touched.
    let (_, text) = parse_file(file)?;
    let key = load_signing_key(&read_file(sign_key)?)
        .map_err(|e| usage(format!("{}: {e}", sign_key.display())))?;
    let authority = ctx.require_authority("policy put")?;
    let mut card = ctx.open_card()?;
    card.select().context("selecting the dmsc applet")?;
    ctx.authenticate(&mut card, &authority)?;
    let out = put_policy(&mut card, text.as_bytes(), &key, replace_key)?;
    if ctx.json {
        print_json(&json!({
            "policy": out.digest,
            "key_fingerprint": out.key_fingerprint,
            "key_written": out.key_written,
            "stored_bytes": out.stored_bytes,
        }))?;
    } else {
        println!("stored policy {} ({} bytes)", out.digest, out.stored_bytes);
        println!(
            "enterprise key {} {}",
            &out.key_fingerprint[..16],
            if out.key_written {
                "written to approver:enterprise"
            } else {
                "already on the card"
            }
        );
    }
    Ok(())
}

fn show(ctx: &Ctx, source: &Source) -> Result<()> {
    let (policy, verified) = load(ctx, source)?;
    if ctx.json {
        return print_json(&json!({
            "name": policy.name,
            "serial": policy.serial,
            "timezone": policy.timezone,
            "resources": policy.defaults,
            "rules": policy.rules.iter().map(|r| json!({
                "id": r.id, "effect": r.effect, "priority": r.priority,
                "resources": r.resources, "line": r.line,
            })).collect::<Vec<_>>(),
            "sites": policy.sites.keys().collect::<Vec<_>>(),
            "verified": verified.as_ref().map(|v| json!({
                "digest": v.digest, "key_fingerprint": v.key_fingerprint,
                "policy_acl": v.policy_acl, "key_acl": v.key_acl,
                "card_id": v.card_id, "generation": v.generation,
            })),
        }));
    }
    println!("policy     {} (serial {})", policy.name, policy.serial);
    println!("time zone  {}", policy.timezone);
    match &verified {
        Some(v) => {
            println!("signature  verified by the card with approver:enterprise");
            println!("key        {}", v.key_fingerprint);
            println!("digest     {}", v.digest);
            println!("ACLs       policy: {}", v.policy_acl);
            println!("           key:    {}", v.key_acl);
        }
        None => println!("signature  none (a policy file)"),
    }
    println!(
        "resources  {}",
        policy
            .defaults
            .iter()
            .map(|(r, s)| format!("{r} (default {s})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("rules:");
    for r in &policy.rules {
        let mut when = Vec::new();
        if let Some(w) = &r.window {
            let days: Vec<&str> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .zip(w.days)
                .filter(|(_, on)| *on)
                .map(|(d, _)| *d)
                .collect();
            when.push(format!(
                "{} {:02}:{:02}-{:02}:{:02} {}",
                days.join(","),
                w.from / 60,
                w.from % 60,
                w.to / 60,
                w.to % 60,
                w.tz_name
            ));
            if let Some((a, b)) = w.dates {
                when.push(format!("from {a} to {b}"));
            }
        }
        if !r.inside.is_empty() {
            when.push(format!("inside {}", r.inside.join("|")));
        }
        if !r.outside.is_empty() {
            when.push(format!("outside {}", r.outside.join("&")));
        }
        if !r.networks.is_empty() {
            when.push(format!("on {}", r.networks.join("|")));
        }
        println!(
            "  {:<16} {:<7} {:<28} priority {:<3} {}",
            r.id,
            if r.effect == State::Enabled {
                "enable"
            } else {
                "disable"
            },
            r.resources.join(","),
            r.priority,
            if when.is_empty() {
                "always".to_string()
            } else {
                when.join("; ")
            }
        );
    }
    Ok(())
}

fn print_decisions(decisions: &[Decision]) {
    for d in decisions {
        println!("{:<24} {:<8} {}", d.resource, d.state, d.decided_by);
    }
}

fn eval(ctx: &Ctx, source: &Source, s: &Situation) -> Result<()> {
    let (policy, verified) = load(ctx, source)?;
    let c = situation(
        s,
        &policy_tz(&policy),
        source.device.as_deref(),
        verified.as_ref().map(|v| v.digest.as_str()),
        ctx.clock.now(),
    )?;
    let decisions = evaluate(&policy, &c);
    if ctx.json {
        return print_json(&json!({
            "at": c.time,
            "decisions": decisions,
            "next_change": next_change(&policy, &c),
            "next_reevaluation": next_reevaluation(&policy, &c),
        }));
    }
    println!("at {}", c.time.to_zoned(policy_tz(&policy)));
    print_decisions(&decisions);
    Ok(())
}

fn next(ctx: &Ctx, source: &Source, s: &Situation) -> Result<()> {
    let (policy, verified) = load(ctx, source)?;
    let c = situation(
        s,
        &policy_tz(&policy),
        source.device.as_deref(),
        verified.as_ref().map(|v| v.digest.as_str()),
        ctx.clock.now(),
    )?;
    let n = next_change(&policy, &c);
    let after = n.map(|t| evaluate(&policy, &c.with_time(t)));
    if ctx.json {
        return print_json(&json!({ "at": c.time, "next_change": n, "decisions": after }));
    }
    match (n, after) {
        (Some(t), Some(after)) => {
            let before = evaluate(&policy, &c);
            println!("next change {}", t.to_zoned(policy_tz(&policy)));
            for (b, a) in before.iter().zip(&after) {
                if b.state != a.state {
                    println!(
                        "  {:<24} {} → {} ({})",
                        a.resource, b.state, a.state, a.decided_by
                    );
                }
            }
        }
        _ => println!(
            "no change within {} days",
            dmsc_host::policy::engine::HORIZON_DAYS
        ),
    }
    Ok(())
}

fn grid(
    ctx: &Ctx,
    source: &Source,
    from: Option<&str>,
    days: u16,
    tz: Option<&str>,
    location: &Option<String>,
    network: &Option<String>,
) -> Result<()> {
    if days == 0 || days > 366 {
        return Err(usage("--days must be 1 to 366"));
    }
    let (policy, verified) = load(ctx, source)?;
    let zone = match tz {
        Some(name) => {
            TimeZone::get(name).map_err(|_| usage(format!("--tz: unknown time zone '{name}'")))?
        }
        None => policy_tz(&policy),
    };
    let zone_name = tz.unwrap_or(&policy.timezone).to_string();
    let first: Date = match from {
        Some(d) => d
            .parse()
            .map_err(|_| usage(format!("--from: '{d}' is not a date YYYY-MM-DD")))?,
        None => ctx.clock.now().to_zoned(zone.clone()).date(),
    };
    let start = first
        .to_zoned(zone.clone())
        .map_err(|e| usage(format!("--from: {e}")))?
        .timestamp();
    let last = first
        .checked_add((days as i32).days())
        .map_err(|e| usage(format!("--days: {e}")))?;
    let end = last
        .to_zoned(zone.clone())
        .map_err(|e| usage(format!("--days: {e}")))?
        .timestamp();
    let s = Situation {
        at: None,
        location: location.clone(),
        network: network.clone(),
    };
    let c = situation(
        &s,
        &policy_tz(&policy),
        source.device.as_deref(),
        verified.as_ref().map(|v| v.digest.as_str()),
        ctx.clock.now(),
    )?;
    let segments = timeline(&policy, &c, start, end);
    if ctx.json {
        return print_json(&json!({
            "from": start, "to": end, "timezone": zone_name,
            "segments": segments,
        }));
    }
    print!(
        "{}",
        render_grid(&policy, &segments, first, days, &zone, &zone_name)
    );
    Ok(())
}

/// Half-hour cells per day.
const CELLS: usize = 48;

/// The state of `resource` over [a, b): one char.
fn cell(segments: &[Segment], index: usize, a: Timestamp, b: Timestamp) -> char {
    if a >= b {
        return ' ';
    }
    let mut on = false;
    let mut off = false;
    for s in segments.iter().filter(|s| s.from < b && s.to > a) {
        match s.decisions.get(index).map(|d| d.state) {
            Some(State::Enabled) => on = true,
            Some(State::Disabled) => off = true,
            None => {}
        }
    }
    match (on, off) {
        (true, true) => '▒',
        (false, true) => '█',
        (true, false) => '·',
        (false, false) => ' ',
    }
}

/// The week grid: a block per day, a row per resource, 30 minutes per column.
pub fn render_grid(
    policy: &Policy,
    segments: &[Segment],
    first: Date,
    days: u16,
    zone: &TimeZone,
    zone_name: &str,
) -> String {
    let width = policy
        .resources
        .iter()
        .map(|r| r.chars().count())
        .max()
        .unwrap_or(8)
        .max(14);
    let mut out = format!(
        "{} — {} day(s) from {first}, {zone_name}\n█ disabled   · enabled   ▒ changes within the half hour\n",
        policy.name, days
    );
    let mut ruler = String::new();
    for h in (0..24).step_by(3) {
        ruler.push_str(&format!("{h:02}    "));
    }
    for k in 0..days {
        let Ok(day) = first.checked_add((k as i32).days()) else {
            break;
        };
        let bound = |i: usize| -> Option<Timestamp> {
            let (d, m) = if i == CELLS {
                (day.tomorrow().ok()?, 0)
            } else {
                (day, i * 30)
            };
            zone.to_ambiguous_timestamp(d.at((m / 60) as i8, (m % 60) as i8, 0, 0))
                .compatible()
                .ok()
        };
        let bounds: Vec<Option<Timestamp>> = (0..=CELLS).map(bound).collect();
        let offsets = match (bounds[0], bounds[CELLS]) {
            (Some(a), Some(b)) => {
                let (oa, ob) = (zone.to_offset(a), zone.to_offset(b));
                if oa != ob {
                    format!("  (clock change: UTC{oa} → UTC{ob})")
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "\n{:<width$} {}{}\n",
            day.strftime("%a %Y-%m-%d").to_string(),
            ruler.trim_end(),
            offsets
        ));
        for (i, res) in policy.resources.iter().enumerate() {
            out.push_str(&format!("{res:<width$} "));
            for c in 0..CELLS {
                let ch = match (bounds[c], bounds[c + 1]) {
                    (Some(a), Some(b)) => cell(segments, i, a, b),
                    _ => ' ',
                };
                out.push(ch);
            }
            out.push('\n');
        }
    }
    out
}

fn print_report(ctx: &Ctx, report: &Report) -> Result<()> {
    if ctx.json {
        return print_json(report);
    }
    // Local times in the policy's zone, with the offset, as `policy eval`.
    let zone = report
        .policy
        .as_ref()
        .and_then(|p| TimeZone::get(&p.timezone).ok())
        .unwrap_or(TimeZone::UTC);
    println!("{} at {}", report.status, report.at.to_zoned(zone.clone()));
    for a in &report.applied {
        println!(
            "  {:<24} {:<8} {}{}",
            a.decision.resource,
            a.decision.state,
            a.decision.decided_by,
            if a.changed { "  (changed)" } else { "" }
        );
    }
    for f in &report.failures {
        println!("  failure ({}): {}", f.stage, f.cause);
    }
    match report.next_change {
        Some(t) => println!("next change {}", t.to_zoned(zone)),
        None => println!("no scheduled change"),
    }
    Ok(())
}

/// One application; the card is opened and released each time.
fn enforce_once(ctx: &Ctx, device: &Path, s: &Situation) -> Result<Report> {
    // Location and an absolute --at need no policy; a local --at
    // (YYYY-MM-DDTHH:MM) is in the time zone of the card's policy.
    let now = ctx.clock.now();
    let mut context = situation(s, &TimeZone::UTC, None, None, now)?;
    let mut card = ctx.open_card()?;
    if let Some(at) =
        s.at.as_deref()
            .filter(|a| !a.starts_with('+') && a.parse::<Timestamp>().is_err())
    {
        if let Ok(v) = read_verified(&mut card) {
            context.time = parse_time(at, &policy_tz(&v.policy), now)?;
        }
    }
    let report = enforce(&mut card, device, &context);
    match report {
        Ok(r) => {
            print_report(ctx, &r)?;
            Ok(r)
        }
        Err(e) => Err(anyhow::Error::new(e)).with_context(|| {
            format!(
                "policy refused; nothing applied (report in {})",
                device.join("policy/report.json").display()
            )
        }),
    }
}

/// `policy enforce --watch`: [`dmsc_host::policy::watch::watch`] with the
/// command's clock, stopped by SIGINT/SIGTERM.
fn watch_loop(
    ctx: &Ctx,
    device: &Path,
    s: &Situation,
    poll: u64,
    max_runs: Option<u32>,
) -> Result<Code> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let mut clock = StoppableClock { ctx, stop };
    let options = WatchOptions {
        poll: Duration::from_secs(poll),
        max_runs,
    };
    // Look at the card: a new generation may carry a new policy.
    let generation = || -> Result<u64> {
        let mut card = ctx.open_card()?;
        Ok(card
            .select()
            .context("selecting the dmsc applet")?
            .generation)
    };
    // One application; re-applied when any decision changes, not only a
    // state: the report must never name a rule or command out of force.
    let apply = || match enforce_once(ctx, device, s) {
        Ok(r) => r.next_reevaluation,
        Err(e) => {
            eprintln!("error: {}", crate::exit::describe(&e));
            None
        }
    };
    watch(&mut clock, &options, generation, apply)?;
    Ok(Code::Ok)
}

/// The command's clock; a wait ends early on SIGINT/SIGTERM, which stops the watch.
struct StoppableClock<'a> {
    ctx: &'a Ctx,
    stop: Arc<AtomicBool>,
}

impl WatchClock for StoppableClock<'_> {
    fn now(&self) -> Timestamp {
        self.ctx.clock.now()
    }

    fn wait(&mut self, duration: Duration) -> ControlFlow<()> {
        let until = std::time::Instant::now() + duration;
        while std::time::Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(
                Duration::from_millis(50)
                    .min(until.saturating_duration_since(std::time::Instant::now())),
            );
        }
        if self.stop.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

struct CommandArgs<'a> {
    action: &'a str,
    resource: &'a str,
    sign_key: &'a Path,
    until: Option<&'a str>,
    counter: Option<u64>,
    valid_for: &'a str,
    policy_file: Option<&'a Path>,
    out: Option<&'a Path>,
    device: Option<&'a Path>,
}

fn command(ctx: &Ctx, a: &CommandArgs) -> Result<()> {
    let key = load_signing_key(&read_file(a.sign_key)?)
        .map_err(|e| usage(format!("{}: {e}", a.sign_key.display())))?;
    let valid: SignedDuration = a.valid_for.parse().map_err(|_| {
        usage(format!(
            "--valid-for: '{}' is not a duration such as 24h",
            a.valid_for
        ))
    })?;
    let now = ctx.clock.now();
    let (policy, digest) = match a.policy_file {
        Some(f) => {
            let (p, text) = parse_file(f)?;
            (p, policy_digest(text.as_bytes()))
        }
        None => {
            let mut card = ctx.open_card()?;
            let v = read_verified(&mut card)?;
            (v.policy, v.digest)
        }
    };
    if !policy.manages(a.resource) {
        return Err(usage(format!(
            "the policy does not manage '{}' (it manages {})",
            a.resource,
            policy.resources.join(", ")
        )));
    }
    let until = a
        .until
        .map(|u| parse_time(u, &policy_tz(&policy), now))
        .transpose()?;
    let counter = match a.counter {
        Some(c) => c,
        None => u64::try_from(now.as_millisecond()).unwrap_or(0),
    };
    let statement = CommandStatement {
        action: if a.action == "enable" {
            State::Enabled
        } else {
            State::Disabled
        },
        resource: a.resource.to_string(),
        until,
        counter,
        not_after: now
            .checked_add(valid)
            .map_err(|_| usage("--valid-for is out of range"))?,
        policy: digest,
    };
    let signed = SignedCommand::sign(&statement, &key);
    let doc = serde_json::to_string_pretty(&signed)? + "\n";
    match a.out {
        Some(path) => {
            std::fs::write(path, &doc)
                .with_context(|| format!("cannot write {}", path.display()))?;
            if !ctx.json && a.device.is_none() {
                println!("signed command #{counter} written to {}", path.display());
            }
        }
        None if a.device.is_none() => print!("{doc}"),
        None => {}
    }
    if let Some(dir) = a.device {
        let s = Situation {
            at: None,
            location: None,
            network: None,
        };
        accept(ctx, &signed, dir, &s)?;
    }
    Ok(())
}

fn accept(ctx: &Ctx, cmd: &SignedCommand, device: &Path, s: &Situation) -> Result<()> {
    let mut card = ctx.open_card()?;
    let (o, _) = accept_command(&mut card, device, cmd, ctx.clock.now())?;
    drop(card);
    if !ctx.json {
        println!(
            "accepted command #{}: {} {}{}",
            o.counter,
            o.resource,
            o.state,
            o.until.map(|u| format!(" until {u}")).unwrap_or_default()
        );
    }
    enforce_once(ctx, device, s).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_shows_hours_across_and_resources_down() {
        let p = Policy::parse(
            "format = \"dmsc-policy\"\nversion = 1\nname = \"ACME\"\ntimezone = \"Europe/Paris\"\n\
             [[rules]]\nid = \"w\"\neffect = \"disable\"\nresources = [\"camera\"]\ndays = [\"mon-fri\"]\n\
             from = \"08:00\"\nto = \"18:15\"\n",
        )
        .unwrap();
        let zone = TimeZone::get("Europe/Paris").unwrap();
        let first: Date = "2026-03-27".parse().unwrap();
        let start = first.to_zoned(zone.clone()).unwrap().timestamp();
        let end = first
            .checked_add(3.days())
            .unwrap()
            .to_zoned(zone.clone())
            .unwrap()
            .timestamp();
        let segs = timeline(&p, &Context::at(start), start, end);
        let g = render_grid(&p, &segs, first, 3, &zone, "Europe/Paris");
        let lines: Vec<&str> = g.lines().collect();
        assert!(lines[3].starts_with("Fri 2026-03-27"), "{g}");
        let fri: String = lines[4].chars().skip(15).collect();
        assert_eq!(
            fri,
            format!("{}{}▒{}", "·".repeat(16), "█".repeat(20), "·".repeat(11))
        );
        // Sunday 29 March: the clock change, and the camera is on all day.
        assert!(lines[9].contains("clock change: UTC+01 → UTC+02"), "{g}");
        // 02:00-02:30 and 02:30-03:00 do not exist that night: the 02:30 cell is blank.
        let sun: String = lines[10].chars().skip(15).collect();
        assert_eq!(sun, format!("{} {}", "·".repeat(5), "·".repeat(42)), "{g}");
    }
}
