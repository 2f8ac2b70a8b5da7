//! `dmsc fleet provision --job` and `dmsc fleet records`: provisioning
//! records (docs/records.md).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use dmsc_host::fleet::records::{
    self, provision_recorded, to_csv, CardOutcome, Job, Location, Records,
};
use serde_json::json;

use crate::common::{load_profile, parse_ids, progress_bar, selected_cards, FleetSource};
use crate::context::Ctx;
use crate::exit::{coded, usage, Code};
use crate::output::print_json;

/// The record database `fleet provision --job` and `fleet records` use by default.
pub const DEFAULT_DB: &str = "dmsc-records.sqlite";

/// `fleet provision --job`: record every attempt, each card once per job.
#[derive(Debug, Args)]
pub struct RecordOptions {
    /// The job: each card is provisioned once for it, every attempt recorded (docs/records.md)
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// The record database: a SQLite file, or PostgreSQL (postgres://…, postgresql://… or
    /// 'host=/dir dbname=…') for several stations [default: dmsc-records.sqlite]
    #[arg(long, value_name = "PATH|URL", requires = "job")]
    pub db: Option<PathBuf>,
    /// This station's name in the records [default: the host name]
    #[arg(long, value_name = "NAME", requires = "job")]
    pub station: Option<String>,
}

/// `fleet records` options.
#[derive(Debug, Args)]
pub struct RecordsArgs {
    /// Only this job
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// The record database: a SQLite file, or PostgreSQL (postgres://…, postgresql://… or
    /// 'host=/dir dbname=…')
    #[arg(long, value_name = "PATH|URL", default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// CSV: a header line, then one line per attempt
    #[arg(long)]
    pub csv: bool,
}

fn open_store(path: &Path, write: bool) -> Result<Box<dyn Records>> {
    records::open(path, write).map_err(|e| coded(Code::Error, e.to_string()))
}

fn station_name(record: &RecordOptions) -> Result<String> {
    if let Some(s) = &record.station {
        return Ok(s.clone());
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(usage("the host has no name: give --station NAME"));
    }
    Ok(name)
}

/// `fleet provision --job NAME`: every input checked (profile, cards, keys,
/// database) before any card is touched.
pub fn provision(
    ctx: &Ctx,
    dir: &Path,
    cards: &str,
    source: &FleetSource,
    job: &str,
    record: &RecordOptions,
) -> Result<Code> {
    let profile = load_profile(dir)?;
    let wanted = parse_ids(cards)?;
    if job.is_empty() {
        return Err(usage("--job: the job needs a name"));
    }
    let station = station_name(record)?;
    let store = open_store(record.db.as_deref().unwrap_or(Path::new(DEFAULT_DB)), true)?;
    // With master keys, the authority's own keys (if given) are the key set
    // the cards hold now: each card gets its own keys under it.
    let (keys, installer) = ctx.card_authority_installing("fleet provision --job", true)?;
    let mut members = selected_cards(ctx, source, wanted.as_deref())?;
    let bar = progress_bar(ctx, members.len());
    bar.set_message("provision");
    let clock = ctx.clock;
    let now = move || clock.now();
    let job = Job {
        name: job,
        station: &station,
        profile: &profile,
        keys: keys.as_ref(),
        installer: installer.as_ref(),
        level: ctx.security_level(),
        now: &now,
    };
    let reports = provision_recorded(&mut members, &job, store.as_ref(), &|r| {
        bar.set_prefix(r.reader.clone());
        bar.inc(1);
    });
    bar.finish_and_clear();
    let count = |name: &str| reports.iter().filter(|r| r.outcome.name() == name).count();
    let failed = count("failed");
    if ctx.json {
        print_json(&json!({
            "job": job.name,
            "station": station,
            "cards": reports.iter().map(|r| json!({
                "reader": r.reader,
                "card_id": r.card_id,
                "outcome": r.outcome.name(),
                "attempt": match &r.outcome { CardOutcome::Provisioned { attempt, .. } => Some(*attempt), _ => None },
                "recovered_attempt": match &r.outcome { CardOutcome::Provisioned { recovered, .. } => *recovered, _ => None },
                "station": match &r.outcome {
                    CardOutcome::AlreadyProvisioned { station } | CardOutcome::InProgressElsewhere { station } => Some(station.clone()),
                    _ => None,
                },
                "error": match &r.outcome { CardOutcome::Failed { error } => Some(error.to_string()), _ => None },
            })).collect::<Vec<_>>(),
            "provisioned": count("provisioned"),
            "skipped": count("skipped"),
            "busy": count("busy"),
            "failed": failed,
        }))?;
    } else {
        for r in &reports {
            let id = r.card_id.as_deref().unwrap_or("card ID unknown");
            match &r.outcome {
                CardOutcome::Provisioned { attempt, recovered } => println!(
                    "ok       {id} ({})  attempt {attempt}{}",
                    r.reader,
                    recovered
                        .map(|a| format!(", redoing interrupted attempt {a}"))
                        .unwrap_or_default()
                ),
                CardOutcome::AlreadyProvisioned { station } => println!(
                    "skipped  {id} ({})  already provisioned for this job by {station}",
                    r.reader
                ),
                CardOutcome::InProgressElsewhere { station } => println!(
                    "busy     {id} ({})  being provisioned by {station}",
                    r.reader
                ),
                CardOutcome::Failed { error } => println!("FAILED   {id} ({})  {error}", r.reader),
            }
        }
        println!(
            "job {}: {} provisioned, {} skipped, {} busy, {} failed",
            job.name,
            count("provisioned"),
            count("skipped"),
            count("busy"),
            failed
        );
    }
    Ok(if failed == 0 { Code::Ok } else { Code::Error })
}

/// `fleet records`.
pub fn run(ctx: &Ctx, args: &RecordsArgs) -> Result<Code> {
    list(ctx, &args.db, args.job.as_deref(), args.csv)
}

fn list(ctx: &Ctx, db: &Path, job: Option<&str>, csv: bool) -> Result<Code> {
    if csv && ctx.json {
        return Err(usage("give either --csv or --json, not both"));
    }
    if !Location::parse(db).exists() {
        return Err(coded(
            Code::NotFound,
            format!("no record database at {}", db.display()),
        ));
    }
    let records = open_store(db, false)?
        .records(job)
        .map_err(|e| coded(Code::Error, e.to_string()))?;
    if csv {
        print!("{}", to_csv(&records));
    } else if ctx.json {
        print_json(&json!({ "records": records }))?;
    } else {
        for r in &records {
            println!(
                "{}  {}  {}  {:<11}  key {}  KCV {}/{}/{}  {} – {}{}",
                r.job,
                r.card_id,
                r.station,
                r.status,
                r.key_version,
                r.kcv_enc.as_deref().unwrap_or("-"),
                r.kcv_mac.as_deref().unwrap_or("-"),
                r.kcv_dek.as_deref().unwrap_or("-"),
                r.started,
                r.finished.as_deref().unwrap_or("…"),
                r.error
                    .as_deref()
                    .map(|e| format!("  {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(Code::Ok)
}
