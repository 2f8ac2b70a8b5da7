//! Provisioning records (docs/records.md): one row per attempt to provision a
//! card for a job, and exactly one claim per card per job.
//!
//! The claim is a row with the primary key (job, card ID), taken in one
//! write transaction (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: `INSERT … ON
//! CONFLICT DO NOTHING`, then the row read `FOR UPDATE`): the database, not
//! the host, decides which attempt provisions a card. A card whose claim is
//! `provisioned` is skipped. A claim left `in_progress` by a station that
//! stopped mid-card is taken over by the next run, which redoes the card
//! (the work is idempotent) and marks the interrupted attempt `failed`
//! ("interrupted"); a claim `in_progress` at a station that works on it is
//! left to it. Which station stopped: with SQLite (one station), a claim of
//! this station's name; with PostgreSQL ([`PgRecords`]), any claim whose
//! station's connection ended (its advisory lock is free). A `failed` claim
//! is retried by the next run.
//!
//! The same algorithm and SQL serve both databases ([`Records`], one
//! implementation over a small transaction interface).
//!
//! Records hold the card ID, profile digest, key version and key check values
//! of the authority keys, never keys.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dmsc_card_model::commands::ObjectValue;
use dmsc_card_model::scp03::{self, SecurityLevel};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::error::HostError;
use crate::fleet::diversify::{open_card_authority, CardAuthorityKeys, DiversifyError, KeyKind};
use crate::fleet::{provision_one, FleetCard, Profile};
use crate::governance::Governance;
use crate::session::scp::{open_secure_channel, AuthorityKeySet};
use crate::session::CardCommands;
use crate::transport::Transport;

mod pg;
pub use pg::PgRecords;

/// The schema version this build writes (SQLite `PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// The status of a claim or an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being provisioned (or interrupted, until a run takes it over).
    InProgress,
    /// Done.
    Provisioned,
    /// Failed (retried by the next run).
    Failed,
}

impl Status {
    /// `in_progress`, `provisioned` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Provisioned => "provisioned",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        match s {
            "in_progress" => Some(Status::InProgress),
            "provisioned" => Some(Status::Provisioned),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// Why the record store failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The database could not be opened, read or written.
    #[error("record database {path}: {what}: {source}")]
    Db {
        /// The database (a PostgreSQL database without its password).
        path: String,
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: DbError,
    },
    /// The PostgreSQL connection string does not parse.
    #[error("record database {path}: not a PostgreSQL connection string: {source}")]
    BadUrl {
        /// What can be shown of it (never the password).
        path: String,
        /// Why.
        #[source]
        source: postgres::Error,
    },
    /// The database was written by a newer dmsc.
    #[error(
        "record database {path}: schema version {found} is newer than this dmsc's \
         ({SCHEMA_VERSION}); use a newer dmsc"
    )]
    NewerSchema {
        /// The database.
        path: String,
        /// Its version.
        found: i64,
    },
    /// A row that this dmsc did not write.
    #[error("record database {path}: unexpected value {value:?} in {column}")]
    Corrupt {
        /// The database.
        path: String,
        /// The column.
        column: &'static str,
        /// The value.
        value: String,
    },
    /// The database answered something its schema rules out.
    #[error("record database {db}: {what}")]
    Inconsistent {
        /// The database.
        db: String,
        /// What.
        what: &'static str,
    },
    /// The attempt's claim was taken over by another attempt (this station's
    /// connection was lost and another station took the card over).
    #[error(
        "record database {db}: the claim of card {card_id} by attempt {attempt} was taken \
         over by another attempt; check the card and its records"
    )]
    TakenOver {
        /// The database.
        db: String,
        /// The card.
        card_id: String,
        /// This attempt.
        attempt: i64,
    },
}

/// The database's own error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// From SQLite.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// From PostgreSQL (the server's message and SQLSTATE shown).
    #[error("{}", describe_pg(.0))]
    Postgres(#[source] postgres::Error),
}

fn describe_pg(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{e}: {} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// What an attempt is about, when it starts.
#[derive(Debug, Clone)]
pub struct AttemptStart<'a> {
    /// The job.
    pub job: &'a str,
    /// The card ID (hex).
    pub card_id: &'a str,
    /// The station (its name).
    pub station: &'a str,
    /// The profile's digest (hex).
    pub profile_digest: &'a str,
    /// The authority key version.
    pub key_version: u8,
    /// When it started (the injected clock).
    pub started: jiff::Timestamp,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This attempt provisions the card; `recovered` names the interrupted
    /// attempt it takes over, if any.
    Claimed {
        /// The attempt number (1, 2, …).
        attempt: i64,
        /// The attempt left `in_progress` that this one redoes.
        recovered: Option<i64>,
    },
    /// The card is already provisioned for the job: skip it.
    AlreadyProvisioned {
        /// The station that did it.
        station: String,
    },
    /// Another station is provisioning it now.
    InProgressElsewhere {
        /// That station.
        station: String,
    },
}

/// One attempt as exported (`dmsc fleet records`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// The card ID (hex).
    pub card_id: String,
    /// The job.
    pub job: String,
    /// The attempt number for this card and job.
    pub attempt: i64,
    /// The station.
    pub station: String,
    /// `in_progress`, `provisioned` or `failed`.
    pub status: String,
    /// The profile's digest (SHA-256, hex).
    pub profile_digest: String,
    /// The authority key version (hex, two digits).
    pub key_version: String,
    /// KCV of the card's ENC key, when known.
    pub kcv_enc: Option<String>,
    /// KCV of MAC.
    pub kcv_mac: Option<String>,
    /// KCV of DEK.
    pub kcv_dek: Option<String>,
    /// Start (RFC 3339).
    pub started: String,
    /// End (RFC 3339), when finished.
    pub finished: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The CSV columns of [`to_csv`], in order.
pub const CSV_COLUMNS: [&str; 13] = [
    "card_id",
    "job",
    "station",
    "status",
    "key_version",
    "kcv_enc",
    "kcv_mac",
    "kcv_dek",
    "started",
    "finished",
    "attempt",
    "profile_digest",
    "error",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The records as CSV: a header line ([`CSV_COLUMNS`]) and one line per attempt.
pub fn to_csv(records: &[Record]) -> String {
    let mut out = CSV_COLUMNS.join(",") + "\n";
    for r in records {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let row = [
            r.card_id.clone(),
            r.job.clone(),
            r.station.clone(),
            r.status.clone(),
            r.key_version.clone(),
            o(&r.kcv_enc),
            o(&r.kcv_mac),
            o(&r.kcv_dek),
            r.started.clone(),
            o(&r.finished),
            r.attempt.to_string(),
            r.profile_digest.clone(),
            o(&r.error),
        ];
        out += &row
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
    }
    out
}

/// The key version the card used and the KCVs of ENC, MAC and DEK.
pub type UsedKeys = (u8, [[u8; 3]; 3]);

/// A record store: what [`provision_recorded`] and `dmsc fleet records` need.
/// [`SqliteRecords`] (one station) and [`PgRecords`] (several stations) run
/// the same claim algorithm and SQL; they differ only in how a transaction
/// starts and in how a station that stopped is told from one that works.
pub trait Records: Send + Sync + std::fmt::Debug {
    /// The database, as messages name it (never with a password).
    fn location(&self) -> &str;
    /// Claims the card for this attempt (see the module documentation) and,
    /// when claimed, writes the attempt's record `in_progress`. One write
    /// transaction: two stations cannot both claim a card.
    fn claim(&self, a: &AttemptStart<'_>) -> Result<Claim, RecordError>;
    /// Ends an attempt: `Ok(keys)` provisioned (with the key version and the
    /// authority keys' KCVs, when known), `Err(why)` failed. The claim follows;
    /// an attempt whose claim was taken over meanwhile is an error.
    fn finish(
        &self,
        job: &str,
        card_id: &str,
        attempt: i64,
        outcome: Result<Option<UsedKeys>, String>,
        finished: jiff::Timestamp,
    ) -> Result<(), RecordError>;
    /// Every attempt (of `job`, or of every job), by job, card and attempt.
    fn records(&self, job: Option<&str>) -> Result<Vec<Record>, RecordError>;
    /// The claim status of a card for a job, if claimed.
    fn claim_status(&self, job: &str, card_id: &str) -> Result<Option<Status>, RecordError>;
    /// Checks that this station may write records (a write rolled back): a
    /// read-only file, role or server is refused here, before any card is
    /// touched.
    fn check_writable(&self) -> Result<(), RecordError>;
}

/// Where records are kept: `postgres://…`, `postgresql://…` or a libpq
/// key-value string naming a `host=` or `dbname=` (PostgreSQL), otherwise the
/// path of a SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (may hold a password: never print it;
    /// [`PgRecords::location`] is the printable form).
    Postgres(String),
}

impl Location {
    /// Tells the forms apart (see [`Location`]).
    pub fn parse(s: &Path) -> Location {
        if let Some(text) = s.to_str() {
            let t = text.trim_start();
            let key_value = t
                .split_ascii_whitespace()
                .any(|w| w.starts_with("host=") || w.starts_with("dbname="));
            if t.starts_with("postgres://") || t.starts_with("postgresql://") || key_value {
                return Location::Postgres(text.to_string());
            }
        }
        Location::Sqlite(s.to_path_buf())
    }

    /// Whether there is something to read: a SQLite file that exists, or a
    /// PostgreSQL database (asked when opened).
    pub fn exists(&self) -> bool {
        match self {
            Location::Sqlite(p) => p.exists(),
            Location::Postgres(_) => true,
        }
    }
}

/// Opens the record store at `location` ([`Location`]), creating and
/// migrating its schema as needed; with `write`, also checks that records
/// can be written ([`Records::check_writable`]).
pub fn open(location: &Path, write: bool) -> Result<Box<dyn Records>, RecordError> {
    let store: Box<dyn Records> = match Location::parse(location) {
        Location::Sqlite(p) => Box::new(SqliteRecords::open(&p)?),
        Location::Postgres(url) => Box::new(PgRecords::open(&url)?),
    };
    if write {
        store.check_writable()?;
    }
    Ok(store)
}

/// A value bound to, or read from, a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

impl Value {
    fn text(s: &str) -> Value {
        Value::Text(Some(s.to_string()))
    }
    fn int(i: i64) -> Value {
        Value::Int(Some(i))
    }
    fn into_text(self) -> Option<String> {
        match self {
            Value::Text(t) => t,
            Value::Int(i) => i.map(|i| i.to_string()),
        }
    }
    fn into_int(self) -> Option<i64> {
        match self {
            Value::Int(i) => i,
            Value::Text(t) => t.and_then(|t| t.parse().ok()),
        }
    }
}

/// The column types a query returns.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Int,
}

/// One write transaction of a store, in SQL with `?N` parameters.
trait Tx {
    /// Runs a statement; the number of rows it changed.
    fn execute(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, RecordError>;
    /// Runs a query; its rows, columns of the `kinds` given.
    fn query(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
        kinds: &[Kind],
    ) -> Result<Vec<Vec<Value>>, RecordError>;
    /// What ends a `SELECT` that locks the rows it reads until the end of the
    /// transaction (`FOR UPDATE`; empty where the transaction locks the
    /// whole database, as SQLite's `BEGIN IMMEDIATE` does).
    fn lock_rows(&self) -> &'static str;
    /// Whether the attempt holding an `in_progress` claim (of `holder`)
    /// stopped, so that `me` takes it over; when true, this connection now
    /// holds the card (see [`Tx::hold`]).
    fn holder_stopped(&mut self, key: &str, holder: &str, me: &str) -> Result<bool, RecordError>;
    /// Marks this connection as working on the card `key` until
    /// [`Backend::release`]; false when a live connection already is.
    fn hold(&mut self, key: &str) -> Result<bool, RecordError>;
}

/// A database the claim algorithm runs on.
trait Backend {
    /// The database, as messages name it.
    fn name(&self) -> &str;
    /// Runs `body` in one write transaction, committed when `commit` and
    /// `body` succeeds, rolled back otherwise; `holding`: on the connection
    /// that holds that card ([`Tx::hold`]), if any.
    fn transaction<R>(
        &self,
        what: &'static str,
        commit: bool,
        holding: Option<&str>,
        body: impl FnOnce(&mut dyn Tx) -> Result<R, RecordError>,
    ) -> Result<R, RecordError>;
    /// Ends this connection's hold of the card `key` ([`Tx::hold`]).
    fn release(&self, key: &str);
}

/// The key that names a card of a job for [`Tx::hold`].
fn hold_key(job: &str, card_id: &str) -> String {
    format!("dmsc-claim\n{job}\n{card_id}")
}

fn claim_in<B: Backend>(db: &B, a: &AttemptStart<'_>) -> Result<Claim, RecordError> {
    let key = hold_key(a.job, a.card_id);
    db.transaction("claiming the card", true, None, |tx| {
        let lock = tx.lock_rows();
        let inserted = tx.execute(
            "claiming the card",
            "INSERT INTO claims (job, card_id, station, status, attempt) \
             VALUES (?1, ?2, ?3, 'in_progress', 1) ON CONFLICT (job, card_id) DO NOTHING",
            &[Value::text(a.job), Value::text(a.card_id), Value::text(a.station)],
        )?;
        let (attempt, recovered) = if inserted == 1 {
            if !tx.hold(&key)? {
                return Err(RecordError::Inconsistent {
                    db: db.name().to_string(),
                    what: "a new claim is held by another connection",
                });
            }
            (1, None)
        } else {
            let row = tx
                .query(
                    "reading the card's claim",
                    &format!(
                        "SELECT station, status, attempt FROM claims \
                         WHERE job = ?1 AND card_id = ?2{lock}"
                    ),
                    &[Value::text(a.job), Value::text(a.card_id)],
                    &[Kind::Text, Kind::Text, Kind::Int],
                )?
                .into_iter()
                .next()
                .ok_or_else(|| RecordError::Inconsistent {
                    db: db.name().to_string(),
                    what: "the card's claim vanished",
                })?;
            let mut row = row.into_iter();
            let mut next = || row.next().ok_or_else(|| RecordError::Inconsistent {
                db: db.name().to_string(),
                what: "a claim row is short",
            });
            let station = next()?.into_text().unwrap_or_default();
            let status = next()?.into_text().unwrap_or_default();
            let attempt = next()?.into_int().unwrap_or(0);
            let status = Status::parse(&status).ok_or_else(|| RecordError::Corrupt {
                path: db.name().to_string(),
                column: "claims.status",
                value: status.clone(),
            })?;
            let recovered = match status {
                Status::Provisioned => return Ok(Claim::AlreadyProvisioned { station }),
                Status::InProgress => {
                    if !tx.holder_stopped(&key, &station, a.station)? {
                        return Ok(Claim::InProgressElsewhere { station });
                    }
                    tx.execute(
                        "closing the interrupted attempt",
                        "UPDATE attempts SET status = 'failed', finished = ?4, \
                         error = 'interrupted: the station stopped mid-card; redone by the next attempt' \
                         WHERE job = ?1 AND card_id = ?2 AND attempt = ?3 AND status = 'in_progress'",
                        &[
                            Value::text(a.job),
                            Value::text(a.card_id),
                            Value::int(attempt),
                            Value::text(&a.started.to_string()),
                        ],
                    )?;
                    Some(attempt)
                }
                Status::Failed => {
                    if !tx.hold(&key)? {
                        return Ok(Claim::InProgressElsewhere { station });
                    }
                    None
                }
            };
            tx.execute(
                "taking over the card's claim",
                "UPDATE claims SET station = ?3, status = 'in_progress', attempt = ?4 \
                 WHERE job = ?1 AND card_id = ?2 AND attempt = ?5",
                &[
                    Value::text(a.job),
                    Value::text(a.card_id),
                    Value::text(a.station),
                    Value::int(attempt + 1),
                    Value::int(attempt),
                ],
            )?;
            (attempt + 1, recovered)
        };
        tx.execute(
            "recording the attempt",
            "INSERT INTO attempts (job, card_id, attempt, station, status, profile_digest, \
             key_version, started) VALUES (?1, ?2, ?3, ?4, 'in_progress', ?5, ?6, ?7)",
            &[
                Value::text(a.job),
                Value::text(a.card_id),
                Value::int(attempt),
                Value::text(a.station),
                Value::text(a.profile_digest),
                Value::int(i64::from(a.key_version)),
                Value::text(&a.started.to_string()),
            ],
        )?;
        Ok(Claim::Claimed { attempt, recovered })
    })
}

fn finish_in<B: Backend>(
    db: &B,
    job: &str,
    card_id: &str,
    attempt: i64,
    outcome: Result<Option<UsedKeys>, String>,
    finished: jiff::Timestamp,
) -> Result<(), RecordError> {
    let (status, keys, error) = match outcome {
        Ok(keys) => (Status::Provisioned, keys, None),
        Err(e) => (Status::Failed, None, Some(e)),
    };
    let kcv = |i: usize| Value::Text(keys.map(|(_, k)| hex::encode_upper(k[i])));
    let key = hold_key(job, card_id);
    let done = db.transaction("recording the end of the attempt", true, Some(&key), |tx| {
        tx.execute(
            "recording the end of the attempt",
            "UPDATE attempts SET status = ?4, kcv_enc = ?5, kcv_mac = ?6, kcv_dek = ?7, \
             finished = ?8, error = ?9, key_version = coalesce(?10, key_version) \
             WHERE job = ?1 AND card_id = ?2 AND attempt = ?3",
            &[
                Value::text(job),
                Value::text(card_id),
                Value::int(attempt),
                Value::text(status.name()),
                kcv(0),
                kcv(1),
                kcv(2),
                Value::text(&finished.to_string()),
                Value::Text(error.clone()),
                Value::Int(keys.map(|(kvn, _)| i64::from(kvn))),
            ],
        )?;
        let released = tx.execute(
            "releasing the card's claim",
            "UPDATE claims SET status = ?4 WHERE job = ?1 AND card_id = ?2 AND attempt = ?3",
            &[
                Value::text(job),
                Value::text(card_id),
                Value::int(attempt),
                Value::text(status.name()),
            ],
        )?;
        if released != 1 {
            return Err(RecordError::TakenOver {
                db: db.name().to_string(),
                card_id: card_id.to_string(),
                attempt,
            });
        }
        Ok(())
    });
    db.release(&key);
    done
}

fn records_in<B: Backend>(db: &B, job: Option<&str>) -> Result<Vec<Record>, RecordError> {
    use Kind::{Int, Text};
    let rows = db.transaction("reading the records", false, None, |tx| {
        tx.query(
            "reading the records",
            "SELECT card_id, job, attempt, station, status, profile_digest, key_version, \
             kcv_enc, kcv_mac, kcv_dek, started, finished, error FROM attempts \
             WHERE CAST(?1 AS TEXT) IS NULL OR job = ?1 ORDER BY job, card_id, attempt",
            &[Value::Text(job.map(str::to_string))],
            &[
                Text, Text, Int, Text, Text, Text, Int, Text, Text, Text, Text, Text, Text,
            ],
        )
    })?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let mut t = || r.next().and_then(Value::into_text);
            let card_id = t().unwrap_or_default();
            let job = t().unwrap_or_default();
            let attempt = t().and_then(|a| a.parse().ok()).unwrap_or(0);
            let station = t().unwrap_or_default();
            let status = t().unwrap_or_default();
            let profile_digest = t().unwrap_or_default();
            let key_version = t().and_then(|k| k.parse::<i64>().ok()).unwrap_or(0);
            Record {
                card_id,
                job,
                attempt,
                station,
                status,
                profile_digest,
                key_version: format!("{key_version:02X}"),
                kcv_enc: t(),
                kcv_mac: t(),
                kcv_dek: t(),
                started: t().unwrap_or_default(),
                finished: t(),
                error: t(),
            }
        })
        .collect())
}

fn claim_status_in<B: Backend>(
    db: &B,
    job: &str,
    card_id: &str,
) -> Result<Option<Status>, RecordError> {
    let rows = db.transaction("reading the card's claim", false, None, |tx| {
        tx.query(
            "reading the card's claim",
            "SELECT status FROM claims WHERE job = ?1 AND card_id = ?2",
            &[Value::text(job), Value::text(card_id)],
            &[Kind::Text],
        )
    })?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .and_then(Value::into_text)
        .as_deref()
        .and_then(Status::parse))
}

fn check_writable_in<B: Backend>(db: &B) -> Result<(), RecordError> {
    db.transaction("checking that records can be written", false, None, |tx| {
        tx.execute(
            "checking that records can be written",
            "INSERT INTO claims (job, card_id, station, status, attempt) \
             VALUES ('', '', '', 'failed', 0)",
            &[],
        )
        .map(|_| ())
    })
}

/// The record store: a SQLite database at a path.
pub struct SqliteRecords {
    path: PathBuf,
    name: String,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteRecords({})", self.path.display())
    }
}

const SCHEMA_V1: &str = "
CREATE TABLE claims (
    job TEXT NOT NULL,
    card_id TEXT NOT NULL,
    station TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'provisioned', 'failed')),
    attempt INTEGER NOT NULL,
    PRIMARY KEY (job, card_id)
);
CREATE TABLE attempts (
    job TEXT NOT NULL,
    card_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    station TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'provisioned', 'failed')),
    profile_digest TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    kcv_enc TEXT,
    kcv_mac TEXT,
    kcv_dek TEXT,
    started TEXT NOT NULL,
    finished TEXT,
    error TEXT,
    PRIMARY KEY (job, card_id, attempt)
);
";

struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    name: &'a str,
}

impl SqliteTx<'_> {
    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> RecordError + '_ {
        move |source| RecordError::Db {
            path: self.name.to_string(),
            what,
            source: DbError::Sqlite(source),
        }
    }
}

fn sqlite_params(params: &[Value]) -> Vec<&dyn rusqlite::ToSql> {
    params
        .iter()
        .map(|v| match v {
            Value::Text(t) => t as &dyn rusqlite::ToSql,
            Value::Int(i) => i as &dyn rusqlite::ToSql,
        })
        .collect()
}

impl Tx for SqliteTx<'_> {
    fn execute(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, RecordError> {
        let n = self
            .tx
            .execute(sql, sqlite_params(params).as_slice())
            .map_err(self.err(what))?;
        Ok(n as u64)
    }

    fn query(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
        kinds: &[Kind],
    ) -> Result<Vec<Vec<Value>>, RecordError> {
        let mut stmt = self.tx.prepare(sql).map_err(self.err(what))?;
        let rows = stmt
            .query_map(sqlite_params(params).as_slice(), |r| {
                kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        Ok(match k {
                            Kind::Text => Value::Text(r.get(i)?),
                            Kind::Int => Value::Int(r.get(i)?),
                        })
                    })
                    .collect::<Result<Vec<_>, rusqlite::Error>>()
            })
            .map_err(self.err(what))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err(what))
    }

    fn lock_rows(&self) -> &'static str {
        // BEGIN IMMEDIATE: the whole database is this transaction's.
        ""
    }

    fn holder_stopped(&mut self, _key: &str, holder: &str, me: &str) -> Result<bool, RecordError> {
        // One process per station: a claim of this station that is still in
        // progress was left by a run that stopped.
        Ok(holder == me)
    }

    fn hold(&mut self, _key: &str) -> Result<bool, RecordError> {
        Ok(true)
    }
}

impl Backend for SqliteRecords {
    fn name(&self) -> &str {
        &self.name
    }

    fn transaction<R>(
        &self,
        what: &'static str,
        commit: bool,
        _holding: Option<&str>,
        body: impl FnOnce(&mut dyn Tx) -> Result<R, RecordError>,
    ) -> Result<R, RecordError> {
        let mut conn = self.lock();
        let err = |source| RecordError::Db {
            path: self.name.clone(),
            what,
            source: DbError::Sqlite(source),
        };
        let behavior = if commit {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        let tx = conn.transaction_with_behavior(behavior).map_err(err)?;
        let mut t = SqliteTx {
            tx,
            name: &self.name,
        };
        let r = body(&mut t)?;
        if commit {
            t.tx.commit().map_err(err)?;
        }
        Ok(r)
    }

    fn release(&self, _key: &str) {}
}

/// The SQLite URI that opens `path` read-only as an unchanging file
/// (`immutable=1`), with `%`, `?` and `#` escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

impl SqliteRecords {
    /// Opens (creating it if needed) the database at `path` and migrates its
    /// schema to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<SqliteRecords, RecordError> {
        let p = path.display().to_string();
        let db = |what: &'static str| {
            let p = p.clone();
            move |source| RecordError::Db {
                path: p,
                what,
                source: DbError::Sqlite(source),
            }
        };
        let mut conn = Connection::open(path).map_err(db("opening"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db("setting the busy timeout"))?;
        let version: i64 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
            Ok(v) => v,
            // A database kept with a write-ahead log, on a location this
            // station may not write, cannot be opened for writing (its shared
            // index file cannot be made): it is opened read-only, unchanging,
            // so that the first write names the read-only database.
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::CannotOpen) && path.is_file() => {
                conn = Connection::open_with_flags(
                    immutable_uri(path),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(db("opening read-only"))?;
                conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(db("reading the schema version"))?
            }
            Err(e) => return Err(db("reading the schema version")(e)),
        };
        if version == 0 {
            // A new database keeps its journal in a write-ahead log: one sync
            // per committed transaction (synchronous FULL, the default), so a
            // claim or a record is durable when its transaction returns, as
            // with a rollback journal, at a third of the syncs. The mode is
            // kept in the file.
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
                .map_err(db("choosing the write-ahead log"))?;
        }
        if version != SCHEMA_VERSION {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("starting the schema migration"))?;
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(db("reading the schema version"))?;
            if version > SCHEMA_VERSION {
                return Err(RecordError::NewerSchema {
                    path: p,
                    found: version,
                });
            }
            if version < 1 {
                tx.execute_batch(SCHEMA_V1)
                    .map_err(db("creating the schema (version 1)"))?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db("writing the schema version"))?;
            tx.commit().map_err(db("committing the schema migration"))?;
        }
        Ok(SqliteRecords {
            path: path.to_path_buf(),
            name: p,
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves it usable: SQLite rolls
        // back the open transaction when the next one begins.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Records` for a [`Backend`]: every operation is the one claim algorithm
/// above, run on that database.
macro_rules! records_on_backend {
    ($store:ty) => {
        impl Records for $store {
            fn location(&self) -> &str {
                Backend::name(self)
            }
            fn claim(&self, a: &AttemptStart<'_>) -> Result<Claim, RecordError> {
                claim_in(self, a)
            }
            fn finish(
                &self,
                job: &str,
                card_id: &str,
                attempt: i64,
                outcome: Result<Option<UsedKeys>, String>,
                finished: jiff::Timestamp,
            ) -> Result<(), RecordError> {
                finish_in(self, job, card_id, attempt, outcome, finished)
            }
            fn records(&self, job: Option<&str>) -> Result<Vec<Record>, RecordError> {
                records_in(self, job)
            }
            fn claim_status(
                &self,
                job: &str,
                card_id: &str,
            ) -> Result<Option<Status>, RecordError> {
                claim_status_in(self, job, card_id)
            }
            fn check_writable(&self) -> Result<(), RecordError> {
                check_writable_in(self)
            }
        }
    };
}
pub(crate) use records_on_backend;

records_on_backend!(SqliteRecords);

/// The digest of a profile: SHA-256 over, for every object in order, its
/// reference, its ACL (empty when none) and its value (an MO's type and
/// content, or the policy bytes), each preceded by its length (4 bytes,
/// big-endian), then the failure limit (one byte, `00` when none). Hex, upper case.
pub fn profile_digest(profile: &Profile) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut part = |b: &[u8]| {
        h.update((b.len() as u32).to_be_bytes());
        h.update(b);
    };
    for o in &profile.objects {
        part(o.object.to_string().as_bytes());
        part(
            o.acl
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        match &o.value {
            ObjectValue::Mo(m) => {
                part(m.mo_type.as_bytes());
                part(&m.content);
            }
            ObjectValue::Policy(p) => part(p),
            other => part(format!("{other:?}").as_bytes()),
        }
    }
    h.update([profile.failure_limit.unwrap_or(0)]);
    hex::encode_upper(h.finalize())
}

/// What happened to one card of a recorded provisioning run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOutcome {
    /// Provisioned by this run (attempt number; the interrupted attempt it redid).
    Provisioned {
        /// The attempt.
        attempt: i64,
        /// The interrupted attempt redone, if any.
        recovered: Option<i64>,
    },
    /// Already provisioned for the job (by `station`): skipped.
    AlreadyProvisioned {
        /// The station that did it.
        station: String,
    },
    /// Being provisioned by another station: skipped.
    InProgressElsewhere {
        /// That station.
        station: String,
    },
    /// Failed (recorded, when the card ID was known and the store answered).
    Failed {
        /// Why.
        error: ProvisionFailure,
    },
}

/// Why a card of a recorded run failed ([`CardOutcome::Failed`]); the
/// attempt's record keeps its text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProvisionFailure {
    /// The card did not answer SELECT (nothing recorded: no card ID).
    #[error("{0}")]
    Select(#[source] HostError),
    /// The record store did not answer the claim.
    #[error("{0}")]
    Claim(#[source] Arc<RecordError>),
    /// The card's own keys could not be installed, or their key check values
    /// computed.
    #[error("{0}")]
    Keys(#[from] KeyInstallError),
    /// The card failed or refused while the profile was written.
    #[error("{0}")]
    Card(#[from] HostError),
    /// The card was provisioned, but its record was not written.
    #[error("provisioned, but the record was not written: {0}")]
    NotRecorded(#[source] Arc<RecordError>),
    /// The card's worker thread stopped before reporting.
    #[error("the worker stopped unexpectedly")]
    WorkerStopped,
}

/// Record store errors (which hold the database's own errors) are equal when
/// they are the same error or read the same.
impl PartialEq for ProvisionFailure {
    fn eq(&self, other: &Self) -> bool {
        use ProvisionFailure as F;
        match (self, other) {
            (F::Select(a), F::Select(b)) | (F::Card(a), F::Card(b)) => a == b,
            (F::Keys(a), F::Keys(b)) => a == b,
            (F::Claim(a), F::Claim(b)) | (F::NotRecorded(a), F::NotRecorded(b)) => {
                Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
            }
            (F::WorkerStopped, F::WorkerStopped) => true,
            _ => false,
        }
    }
}

impl Eq for ProvisionFailure {}

impl CardOutcome {
    /// `provisioned`, `skipped` (already provisioned), `busy` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            CardOutcome::Provisioned { .. } => "provisioned",
            CardOutcome::AlreadyProvisioned { .. } => "skipped",
            CardOutcome::InProgressElsewhere { .. } => "busy",
            CardOutcome::Failed { .. } => "failed",
        }
    }
}

/// One card of a recorded run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardReport {
    /// The reader.
    pub reader: String,
    /// The card ID, when the card answered SELECT.
    pub card_id: Option<String>,
    /// What happened.
    pub outcome: CardOutcome,
}

/// A recorded provisioning job.
pub struct Job<'a> {
    /// The job's name.
    pub name: &'a str,
    /// This station's name.
    pub station: &'a str,
    /// The profile.
    pub profile: &'a Profile,
    /// The authority keys (fixed or per card).
    pub keys: &'a dyn CardAuthorityKeys,
    /// The key set the cards hold before provisioning (e.g. transport keys),
    /// with per-card `keys` only: a card that does not yet hold its own keys
    /// gets them first (PUT KEY under this key set, which they replace; see
    /// [`install_card_keys`]). `None`: the cards already hold `keys`.
    pub installer: Option<&'a AuthorityKeySet>,
    /// The security level of the sessions.
    pub level: SecurityLevel,
    /// The clock (injected).
    pub now: &'a (dyn Fn() -> jiff::Timestamp + Sync),
}

/// Attempts at a card within one run. A second attempt follows a claimed
/// attempt that failed on the card and was recorded `failed`: another
/// station's SELECT of a card both see (each station reads every card's ID
/// when it starts) ends the secure channel of the station working on it,
/// which then claims the card again and redoes it (or finds it taken by the
/// other station). A card that fails again is left `failed` for the next run.
const ATTEMPTS_PER_RUN: usize = 2;

fn provision_recorded_one<T: Transport>(
    card: &mut FleetCard<T>,
    job: &Job<'_>,
    digest: &str,
    store: &dyn Records,
) -> CardReport {
    let mut tries = 1;
    loop {
        let (report, again) = provision_recorded_attempt(card, job, digest, store);
        if !again || tries >= ATTEMPTS_PER_RUN {
            return report;
        }
        tries += 1;
        card.session.clear_secure_messaging();
    }
}

/// One attempt; with it, whether the attempt was claimed, failed on the
/// card and was recorded `failed` (so that it may be tried again).
fn provision_recorded_attempt<T: Transport>(
    card: &mut FleetCard<T>,
    job: &Job<'_>,
    digest: &str,
    store: &dyn Records,
) -> (CardReport, bool) {
    let reader = card.reader.clone();
    let report = |card_id: Option<String>, outcome| CardReport {
        reader: reader.clone(),
        card_id,
        outcome,
    };
    // The card ID read when the fleet was opened (no second SELECT, which
    // would end another station's secure channel with the card).
    let card_id = match card.card_id() {
        Some(id) => id,
        None => match card.status() {
            Ok(s) => s.card_id,
            Err(e) => {
                return (
                    report(
                        None,
                        CardOutcome::Failed {
                            error: ProvisionFailure::Select(e),
                        },
                    ),
                    false,
                )
            }
        },
    };
    let claim = store.claim(&AttemptStart {
        job: job.name,
        card_id: &card_id,
        station: job.station,
        profile_digest: digest,
        key_version: job.keys.key_version(),
        started: (job.now)(),
    });
    let (attempt, recovered) = match claim {
        Ok(Claim::Claimed { attempt, recovered }) => (attempt, recovered),
        Ok(Claim::AlreadyProvisioned { station }) => {
            return (
                report(Some(card_id), CardOutcome::AlreadyProvisioned { station }),
                false,
            )
        }
        Ok(Claim::InProgressElsewhere { station }) => {
            return (
                report(Some(card_id), CardOutcome::InProgressElsewhere { station }),
                false,
            )
        }
        Err(e) => {
            return (
                report(
                    Some(card_id),
                    CardOutcome::Failed {
                        error: ProvisionFailure::Claim(Arc::new(e)),
                    },
                ),
                false,
            )
        }
    };
    // The work is idempotent: a card that already holds its own keys keeps
    // them, and a redone card gets the same objects again.
    let done = install_card_keys(card, job)
        .map_err(ProvisionFailure::from)
        .map(|()| stop_here_for_fault_test(&card_id))
        .and_then(|()| Ok(provision_one(card, job.profile, job.keys, job.level)?))
        .and_then(|(_, kvn)| Ok((kvn, kcvs_of(job.keys, &card_id)?)));
    let finished = store.finish(
        job.name,
        &card_id,
        attempt,
        done.as_ref()
            .map(|used| Some(*used))
            .map_err(|e| e.to_string()),
        (job.now)(),
    );
    let again = done.is_err() && finished.is_ok();
    let outcome = match (done, finished) {
        (Ok(_), Ok(())) => CardOutcome::Provisioned { attempt, recovered },
        (Err(error), _) => CardOutcome::Failed { error },
        (Ok(_), Err(e)) => CardOutcome::Failed {
            error: ProvisionFailure::NotRecorded(Arc::new(e)),
        },
    };
    (report(Some(card_id), outcome), again)
}

/// The environment variable of the crash tests: set to a card ID (or `*`),
/// the worker on that card stops after the card is claimed and holds its own
/// keys, before the profile is written: it prints `stopped mid-card ID` on
/// standard error and waits there until the process is killed.
pub const FAULT_STOP_MID_CARD: &str = "DMSC_FAULT_STOP_MID_CARD";

fn stop_here_for_fault_test(card_id: &str) {
    let Some(wanted) = std::env::var_os(FAULT_STOP_MID_CARD) else {
        return;
    };
    if wanted != "*" && wanted != card_id {
        return;
    }
    eprintln!("stopped mid-card {card_id}");
    loop {
        std::thread::park();
    }
}

/// Why a card's own authority keys could not be installed
/// ([`install_card_keys`]), or their key check values not computed for its
/// record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyInstallError {
    /// An installer key set was given with keys that are not per card.
    #[error("installing per-card keys needs master keys")]
    NotPerCard,
    /// The installer key set's key version is not the master keys'.
    #[error(
        "the current key set has key version {current:02X}, the master keys {master:02X}: \
         the card's keys replace the key set of the same version"
    )]
    KeyVersion {
        /// The installer key set's key version.
        current: u8,
        /// The master keys' key version.
        master: u8,
    },
    /// Neither the card's own keys nor the installer key set open an
    /// authority session.
    #[error(
        "neither the card's own keys ({own}) nor the current key set ({current}) open a session"
    )]
    NoSession {
        /// Why the card's own keys did not open one.
        own: Box<HostError>,
        /// Why the installer key set did not open one.
        #[source]
        current: Box<HostError>,
    },
    /// The authority session opened, but the card ID is not known.
    #[error("no card ID after the authority session opened")]
    NoCardId,
    /// The card's keys could not be derived from the master keys.
    #[error(
        "cannot derive the keys of card {}: {source}",
        hex::encode_upper(card_id)
    )]
    Derive {
        /// The card ID.
        card_id: Vec<u8>,
        /// Why.
        #[source]
        source: DiversifyError,
    },
    /// PUT KEY with the card's own keys failed.
    #[error("installing the card's own keys (PUT KEY): {0}")]
    PutKey(#[source] HostError),
    /// The card ID to record is not hex.
    #[error("{source}")]
    CardIdHex {
        /// The card ID as read.
        card_id: String,
        /// Why it does not decode.
        #[source]
        source: hex::FromHexError,
    },
    /// The card's keys could not be derived to compute their key check values.
    #[error("{source}")]
    RecordedKeys {
        /// The card ID.
        card_id: Vec<u8>,
        /// Why.
        #[source]
        source: DiversifyError,
    },
    /// A key's check value could not be computed.
    #[error("{source}")]
    KeyCheckValue {
        /// The key.
        kind: KeyKind,
        /// Why.
        #[source]
        source: scp03::Scp03Error,
    },
}

/// Gives the card its own authority keys when `job.installer` is set (and
/// `job.keys` are per card): if an authority session with the card's own keys
/// opens, the card already holds them (a rerun after an interrupted attempt)
/// and nothing is sent. Otherwise a session is opened with the installer's
/// key set and PUT KEY replaces that key set by the card's keys (same key
/// version, so the installer's keys no longer open a session). The installer's
/// key version must be the master keys'.
pub fn install_card_keys<T: Transport>(
    card: &mut FleetCard<T>,
    job: &Job<'_>,
) -> Result<(), KeyInstallError> {
    let Some(installer) = job.installer else {
        return Ok(());
    };
    if !job.keys.per_card() {
        return Err(KeyInstallError::NotPerCard);
    }
    let kvn = job.keys.key_version();
    if installer.key_version != kvn {
        return Err(KeyInstallError::KeyVersion {
            current: installer.key_version,
            master: kvn,
        });
    }
    let own = match open_card_authority(&mut card.session, job.keys, job.level) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    card.session.clear_secure_messaging();
    open_secure_channel(&mut card.session, installer, job.level).map_err(|current| {
        KeyInstallError::NoSession {
            own: Box::new(own),
            current: Box::new(current),
        }
    })?;
    let card_id = card
        .session
        .select_info()
        .map(|i| i.card_id)
        .ok_or(KeyInstallError::NoCardId)?;
    let keys = job
        .keys
        .for_card(&card_id)
        .map_err(|source| KeyInstallError::Derive {
            card_id: card_id.to_vec(),
            source,
        })?;
    card.session
        .rotate_authority(installer, kvn, kvn, &keys.keys)
        .map_err(KeyInstallError::PutKey)?;
    Ok(())
}

fn kcvs_of(keys: &dyn CardAuthorityKeys, card_id: &str) -> Result<[[u8; 3]; 3], KeyInstallError> {
    let id = hex::decode(card_id).map_err(|source| KeyInstallError::CardIdHex {
        card_id: card_id.to_string(),
        source,
    })?;
    let set = keys
        .for_card(&id)
        .map_err(|source| KeyInstallError::RecordedKeys {
            card_id: id.clone(),
            source,
        })?;
    let kcv = |kind: KeyKind, k: &[u8]| {
        scp03::key_check_value(k).map_err(|source| KeyInstallError::KeyCheckValue { kind, source })
    };
    Ok([
        kcv(KeyKind::Enc, set.keys.enc())?,
        kcv(KeyKind::Mac, set.keys.mac())?,
        kcv(KeyKind::Dek, set.keys.dek())?,
    ])
}

/// Provisions every card for `job`, one worker per reader, each card claimed
/// in `store` first (exactly once per card per job; see the module
/// documentation) and every attempt recorded. `progress` is called as each
/// card finishes.
pub fn provision_recorded<T: Transport>(
    cards: &mut [FleetCard<T>],
    job: &Job<'_>,
    store: &dyn Records,
    progress: &(dyn Fn(&CardReport) + Sync),
) -> Vec<CardReport> {
    let digest = profile_digest(job.profile);
    std::thread::scope(|scope| {
        let workers: Vec<_> = cards
            .iter_mut()
            .map(|card| {
                let digest = &digest;
                scope.spawn(move || {
                    let r = provision_recorded_one(card, job, digest, store);
                    progress(&r);
                    r
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| CardReport {
                    reader: String::new(),
                    card_id: None,
                    outcome: CardOutcome::Failed {
                        error: ProvisionFailure::WorkerStopped,
                    },
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    fn start<'a>(card: &'a str, station: &'a str, t: i64) -> AttemptStart<'a> {
        AttemptStart {
            job: "J1",
            card_id: card,
            station,
            profile_digest: "AB",
            key_version: 0x30,
            started: at(t),
        }
    }

    /// A new database keeps a write-ahead log with full syncs: a claim is
    /// durable when it returns, with one sync per transaction.
    #[test]
    fn a_new_database_keeps_a_write_ahead_log_with_full_syncs() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = SqliteRecords::open(&dir.path().join("r.sqlite")).expect("open");
        let conn = db.lock();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode");
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous");
        assert_eq!((mode.as_str(), synchronous), ("wal", 2), "2 is FULL");
    }

    #[test]
    fn the_immutable_uri_escapes_what_a_uri_reads_as_syntax() {
        assert_eq!(
            immutable_uri(Path::new("/d/a%b?c#d.sqlite")),
            "file:/d/a%25b%3fc%23d.sqlite?immutable=1"
        );
    }

    #[test]
    fn a_card_is_claimed_once_and_an_interrupted_claim_is_taken_over() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite");
        let db = SqliteRecords::open(&path).expect("open");
        assert_eq!(
            db.claim(&start("C1", "S1", 0)).expect("claim"),
            Claim::Claimed {
                attempt: 1,
                recovered: None
            }
        );
        // Another station sees it in progress; after it is done, provisioned.
        assert_eq!(
            db.claim(&start("C1", "S2", 1)).expect("claim"),
            Claim::InProgressElsewhere {
                station: "S1".into()
            }
        );
        db.finish(
            "J1",
            "C1",
            1,
            Ok(Some((0x30, [[1, 2, 3], [4, 5, 6], [7, 8, 9]]))),
            at(2),
        )
        .expect("finish");
        assert_eq!(
            db.claim(&start("C1", "S2", 3)).expect("claim"),
            Claim::AlreadyProvisioned {
                station: "S1".into()
            }
        );
        // S1 stops mid-card on C2; its next run (reopened database) takes over.
        assert!(matches!(
            db.claim(&start("C2", "S1", 4)).expect("claim"),
            Claim::Claimed { attempt: 1, .. }
        ));
        drop(db);
        let db = SqliteRecords::open(&path).expect("reopen");
        assert_eq!(
            db.claim(&start("C2", "S1", 5)).expect("claim"),
            Claim::Claimed {
                attempt: 2,
                recovered: Some(1)
            }
        );
        db.finish("J1", "C2", 2, Err("card removed".into()), at(6))
            .expect("finish");
        // A failed card is retried by the next run.
        assert!(matches!(
            db.claim(&start("C2", "S2", 7)).expect("claim"),
            Claim::Claimed {
                attempt: 3,
                recovered: None
            }
        ));
        let r = db.records(Some("J1")).expect("records");
        let summary: Vec<(String, i64, String)> = r
            .iter()
            .map(|r| (r.card_id.clone(), r.attempt, r.status.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("C1".into(), 1, "provisioned".into()),
                ("C2".into(), 1, "failed".into()),
                ("C2".into(), 2, "failed".into()),
                ("C2".into(), 3, "in_progress".into()),
            ]
        );
        assert_eq!(r[0].kcv_enc.as_deref(), Some("010203"));
        assert_eq!(r[0].started, "2027-01-15T08:00:00Z");
        assert!(r[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("interrupted")));
        let csv = to_csv(&r);
        assert!(csv.starts_with(
            "card_id,job,station,status,key_version,kcv_enc,kcv_mac,kcv_dek,started,finished"
        ));
        assert_eq!(csv.lines().count(), 5);
        assert!(db.records(Some("other")).expect("records").is_empty());
    }

    #[test]
    fn racing_threads_claim_each_card_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite");
        SqliteRecords::open(&path).expect("create");
        let claimed: Vec<usize> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let path = path.clone();
                    s.spawn(move || {
                        // Each its own connection, as separate stations are.
                        let db = SqliteRecords::open(&path).expect("open");
                        let station = format!("S{w}");
                        (0..20)
                            .filter(|c| {
                                let card = format!("C{c}");
                                matches!(
                                    db.claim(&start(&card, &station, 0)).expect("claim"),
                                    Claim::Claimed { .. }
                                )
                            })
                            .count()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("join"))
                .collect()
        });
        assert_eq!(claimed.iter().sum::<usize>(), 20, "{claimed:?}");
    }

    /// Self-test of the exactly-once check: a check-then-act claim (look,
    /// then write) lets two stations that both look before either writes
    /// both provision the card; the real claim, in the same interleaving,
    /// gives the card to one station.
    #[test]
    fn the_once_check_catches_a_check_then_act_claim() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite");
        let db = SqliteRecords::open(&path).expect("open");
        let looks_free = || db.claim_status("J1", "C1").expect("status").is_none();
        // Broken variant: both look, then both write.
        let (a_free, b_free) = (looks_free(), looks_free());
        let broken_claims = [a_free, b_free].into_iter().filter(|f| *f).count();
        assert_ne!(
            broken_claims, 1,
            "check-then-act gives the card to both stations"
        );
        // The claim: the same interleaving, one winner.
        let a = db.claim(&start("C1", "S1", 0)).expect("claim");
        let b = db.claim(&start("C1", "S2", 0)).expect("claim");
        let real_claims = [a, b]
            .iter()
            .filter(|c| matches!(c, Claim::Claimed { .. }))
            .count();
        assert_eq!(real_claims, 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.sqlite");
        {
            let c = Connection::open(&path).expect("open");
            c.pragma_update(None, "user_version", 9).expect("pragma");
        }
        let e = SqliteRecords::open(&path).unwrap_err().to_string();
        assert!(e.contains("schema version 9 is newer"), "{e}");
    }
}

#[cfg(all(test, feature = "sim"))]
#[allow(clippy::expect_used, clippy::panic)]
mod card_tests {
    use super::*;
    use crate::fleet::diversify::{derive_card_keys, install_diversified_keys, SoftMasterKeys};
    use crate::fleet::ProfileObject;
    use crate::transport::sim::SimTransport;
    use crate::{AuthorityKeySet, Session};
    use dmsc_card_model::commands::MoRecord;
    use dmsc_card_model::objects::{Acl, ObjectRef};
    use dmsc_card_model::scp03::StaticKeys;
    use dmsc_sim_card::{AuthorityKeys, InitParams, MemoryStore};
    use zeroize::Zeroizing;

    type Card = FleetCard<SimTransport<MemoryStore>>;

    const TRANSPORT_KEY: [u8; 16] = [0x4B; 16];

    fn master() -> SoftMasterKeys {
        // Key version 01: the card's admin key set becomes its diversified one.
        SoftMasterKeys::new(
            0x01,
            StaticKeys::new(&[0x71; 16], &[0x72; 16], &[0x73; 16]).expect("keys"),
        )
    }

    fn transport() -> AuthorityKeySet {
        AuthorityKeySet {
            key_version: 0x01,
            keys: StaticKeys::new(&TRANSPORT_KEY, &TRANSPORT_KEY, &TRANSPORT_KEY).expect("k"),
        }
    }

    /// A card that still holds its transport keys (key set 01).
    fn transport_card(i: usize) -> Card {
        let params = InitParams::with_authorities(vec![AuthorityKeys {
            key_version: 0x01,
            name: "admin".into(),
            enc: Zeroizing::new(TRANSPORT_KEY.to_vec()),
            mac: Zeroizing::new(TRANSPORT_KEY.to_vec()),
            dek: Zeroizing::new(TRANSPORT_KEY.to_vec()),
        }]);
        FleetCard::new(
            format!("reader {i}"),
            Session::new(SimTransport::in_memory(params).expect("card")),
        )
    }

    fn card(i: usize) -> Card {
        let params = InitParams::with_authorities(vec![AuthorityKeys {
            key_version: 0x01,
            name: "admin".into(),
            enc: Zeroizing::new(TRANSPORT_KEY.to_vec()),
            mac: Zeroizing::new(TRANSPORT_KEY.to_vec()),
            dek: Zeroizing::new(TRANSPORT_KEY.to_vec()),
        }]);
        let mut s = Session::new(SimTransport::in_memory(params).expect("card"));
        let transport = AuthorityKeySet {
            key_version: 0x01,
            keys: StaticKeys::new(&TRANSPORT_KEY, &TRANSPORT_KEY, &TRANSPORT_KEY).expect("k"),
        };
        install_diversified_keys(&mut s, &transport, &master(), "admin", level()).expect("install");
        FleetCard::new(format!("reader {i}"), s)
    }

    fn level() -> SecurityLevel {
        SecurityLevel::new(0x33).expect("level")
    }

    fn profile() -> Profile {
        Profile {
            objects: vec![ProfileObject {
                object: ObjectRef::Mo("./Vendor/Gw".into()),
                value: ObjectValue::Mo(MoRecord {
                    mo_type: "urn:x-vendor:gw".into(),
                    version: 0,
                    content: b"<MgmtTree/>".to_vec(),
                }),
                acl: Some(Acl::parse("Get=*&Replace=admin").expect("acl")),
            }],
            failure_limit: Some(6),
        }
    }

    #[test]
    fn every_card_once_then_skipped_and_an_interrupted_card_is_redone() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("records.sqlite");
        let store = SqliteRecords::open(&path).expect("open");
        let m = master();
        let mut cards: Vec<Card> = (0..3).map(card).collect();
        let ids: Vec<String> = cards
            .iter_mut()
            .map(|c| c.status().expect("select").card_id)
            .collect();
        let p = profile();
        let clock = || jiff::Timestamp::from_second(1_800_000_000).expect("t");
        let job = Job {
            name: "J",
            station: "S1",
            profile: &p,
            keys: &m,
            installer: None,
            level: level(),
            now: &clock,
        };
        // Card 2: a run of S1 stopped after claiming it and writing part of it.
        store
            .claim(&AttemptStart {
                job: "J",
                card_id: &ids[2],
                station: "S1",
                profile_digest: &profile_digest(&p),
                key_version: 0x01,
                started: clock(),
            })
            .expect("claim");
        provision_one(&mut cards[2], &p, &m, level()).expect("half-done card");

        let first = provision_recorded(&mut cards, &job, &store, &|_| {});
        let outcomes: Vec<&CardOutcome> = first.iter().map(|r| &r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                &CardOutcome::Provisioned {
                    attempt: 1,
                    recovered: None
                },
                &CardOutcome::Provisioned {
                    attempt: 1,
                    recovered: None
                },
                &CardOutcome::Provisioned {
                    attempt: 2,
                    recovered: Some(1)
                },
            ],
            "{first:?}"
        );
        // A second run skips every card.
        let second = provision_recorded(&mut cards, &job, &store, &|_| {});
        assert!(
            second.iter().all(|r| r.outcome
                == CardOutcome::AlreadyProvisioned {
                    station: "S1".into()
                }),
            "{second:?}"
        );
        let records = store.records(Some("J")).expect("records");
        assert_eq!(records.len(), 4);
        for (i, id) in ids.iter().enumerate() {
            let keys = derive_card_keys(&m, &hex::decode(id).expect("hex")).expect("keys");
            let last = records.iter().rfind(|r| &r.card_id == id).expect("record");
            assert_eq!(last.status, "provisioned", "card {i}");
            assert_eq!(last.kcv_enc, Some(hex::encode_upper(keys.kcvs[0])));
        }
        // Per-card keys differ, and no key byte is in the database.
        drop(store);
        let db = std::fs::read(&path).expect("read");
        let db_upper = String::from_utf8_lossy(&db).to_uppercase();
        for id in &ids {
            let keys = derive_card_keys(&m, &hex::decode(id).expect("hex")).expect("keys");
            let k = &keys.authority.keys;
            for key in [k.enc(), k.mac(), k.dek()] {
                assert!(!db.windows(key.len()).any(|w| w == key));
                assert!(!db_upper.contains(&hex::encode_upper(key)));
            }
        }
    }

    #[test]
    fn provisioning_installs_each_cards_own_keys_and_a_rerun_recognises_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteRecords::open(&dir.path().join("r.sqlite")).expect("open");
        let m = master();
        let t = transport();
        let mut cards: Vec<Card> = (0..3).map(transport_card).collect();
        let ids: Vec<String> = cards
            .iter_mut()
            .map(|c| c.status().expect("select").card_id)
            .collect();
        let p = profile();
        let clock = || jiff::Timestamp::from_second(1_800_000_000).expect("t");
        let job = Job {
            name: "J",
            station: "S1",
            profile: &p,
            keys: &m,
            installer: Some(&t),
            level: level(),
            now: &clock,
        };
        // Card 2: a run stopped after claiming it and installing its keys.
        store
            .claim(&AttemptStart {
                job: "J",
                card_id: &ids[2],
                station: "S1",
                profile_digest: &profile_digest(&p),
                key_version: 0x01,
                started: clock(),
            })
            .expect("claim");
        install_card_keys(&mut cards[2], &job).expect("keys installed");

        let reports = provision_recorded(&mut cards, &job, &store, &|_| {});
        assert!(
            reports
                .iter()
                .all(|r| matches!(r.outcome, CardOutcome::Provisioned { .. })),
            "{reports:?}"
        );
        let records = store.records(Some("J")).expect("records");
        let mut kcvs = Vec::new();
        for (card, id) in cards.iter_mut().zip(&ids) {
            let keys = derive_card_keys(&m, &hex::decode(id).expect("hex")).expect("keys");
            let last = records.iter().rfind(|r| &r.card_id == id).expect("record");
            assert_eq!(last.status, "provisioned");
            assert_eq!(last.key_version, "01");
            assert_eq!(last.kcv_enc, Some(hex::encode_upper(keys.kcvs[0])));
            kcvs.push(last.kcv_enc.clone());
            // The card's own keys open a session; the transport keys no longer do.
            open_card_authority(&mut card.session, &m, level()).expect("own keys");
            card.session.clear_secure_messaging();
            assert!(open_secure_channel(&mut card.session, &t, level()).is_err());
        }
        kcvs.sort();
        kcvs.dedup();
        assert_eq!(kcvs.len(), 3, "every card has its own keys");
    }

    #[test]
    fn installing_needs_the_master_keys_version() {
        let m = master();
        let other = AuthorityKeySet {
            key_version: 0x02,
            ..transport()
        };
        let p = profile();
        let clock = || jiff::Timestamp::from_second(1_800_000_000).expect("t");
        let job = Job {
            name: "J",
            station: "S1",
            profile: &p,
            keys: &m,
            installer: Some(&other),
            level: level(),
            now: &clock,
        };
        let e = install_card_keys(&mut transport_card(0), &job).expect_err("refused");
        assert_eq!(
            e,
            KeyInstallError::KeyVersion {
                current: 0x02,
                master: 0x01
            }
        );
        assert_eq!(
            e.to_string(),
            "the current key set has key version 02, the master keys 01: the card's keys \
             replace the key set of the same version"
        );
    }

    fn job_with<'a>(
        p: &'a Profile,
        keys: &'a dyn CardAuthorityKeys,
        installer: &'a AuthorityKeySet,
        clock: &'a (dyn Fn() -> jiff::Timestamp + Sync),
    ) -> Job<'a> {
        Job {
            name: "J",
            station: "S1",
            profile: p,
            keys,
            installer: Some(installer),
            level: level(),
            now: clock,
        }
    }

    #[test]
    fn each_key_install_failure_is_typed_and_reads_as_before() {
        let m = master();
        let t = transport();
        let p = profile();
        let clock = || jiff::Timestamp::from_second(1_800_000_000).expect("t");

        // Fixed keys cannot be installed per card.
        let e = install_card_keys(&mut transport_card(0), &job_with(&p, &t, &t, &clock))
            .expect_err("refused");
        assert_eq!(e, KeyInstallError::NotPerCard);
        assert_eq!(e.to_string(), "installing per-card keys needs master keys");

        // Neither the card's own keys nor a wrong installer key set open a session.
        let wrong = AuthorityKeySet {
            key_version: 0x01,
            keys: StaticKeys::new(&[0x10; 16], &[0x10; 16], &[0x10; 16]).expect("k"),
        };
        let e = install_card_keys(&mut transport_card(0), &job_with(&p, &m, &wrong, &clock))
            .expect_err("refused");
        let KeyInstallError::NoSession { own, current } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            e.to_string(),
            format!(
                "neither the card's own keys ({own}) nor the current key set ({current}) \
                 open a session"
            )
        );
        assert!(std::error::Error::source(&e).is_some());

        let host = crate::error::HostError::Protocol {
            command: "PUT KEY",
            fault: crate::error::ProtocolFault::NoCardId,
        };
        assert_eq!(
            KeyInstallError::PutKey(host.clone()).to_string(),
            format!("installing the card's own keys (PUT KEY): {host}")
        );
        assert_eq!(
            KeyInstallError::NoCardId.to_string(),
            "no card ID after the authority session opened"
        );
        let short = DiversifyError::CardIdLength(2);
        assert_eq!(
            KeyInstallError::Derive {
                card_id: vec![0x0A, 0xB0],
                source: short.clone(),
            }
            .to_string(),
            format!("cannot derive the keys of card 0AB0: {short}")
        );
        assert_eq!(
            KeyInstallError::KeyCheckValue {
                kind: KeyKind::Mac,
                source: scp03::Scp03Error::BadKeyLength,
            }
            .to_string(),
            "AES key must be 16, 24 or 32 bytes"
        );

        // The key check values of a card ID that is not hex, or not 16 bytes.
        let e = kcvs_of(&m, "XY").expect_err("not hex");
        assert!(
            matches!(&e, KeyInstallError::CardIdHex { card_id, .. } if card_id == "XY"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "Invalid character 'X' at position 0");
        let e = kcvs_of(&m, "0AB0").expect_err("short");
        assert_eq!(
            e,
            KeyInstallError::RecordedKeys {
                card_id: vec![0x0A, 0xB0],
                source: DiversifyError::CardIdLength(2),
            }
        );
        assert_eq!(e.to_string(), DiversifyError::CardIdLength(2).to_string());
    }

    #[test]
    fn a_failed_key_install_is_recorded_and_reported_with_its_text() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteRecords::open(&dir.path().join("r.sqlite")).expect("open");
        let m = master();
        let other = AuthorityKeySet {
            key_version: 0x02,
            ..transport()
        };
        let p = profile();
        let clock = || jiff::Timestamp::from_second(1_800_000_000).expect("t");
        let mut cards = vec![transport_card(0)];
        let reports = provision_recorded(
            &mut cards,
            &job_with(&p, &m, &other, &clock),
            &store,
            &|_| {},
        );
        let text = "the current key set has key version 02, the master keys 01: the card's \
                    keys replace the key set of the same version";
        let CardOutcome::Failed { error } = &reports[0].outcome else {
            panic!("{reports:?}")
        };
        assert_eq!(
            *error,
            ProvisionFailure::Keys(KeyInstallError::KeyVersion {
                current: 0x02,
                master: 0x01
            })
        );
        assert_eq!(error.to_string(), text);
        let records = store.records(Some("J")).expect("records");
        assert!(!records.is_empty());
        assert!(
            records.iter().all(|r| r.error.as_deref() == Some(text)),
            "{records:?}"
        );
    }

    #[test]
    fn each_provision_failure_reads_as_before() {
        let host = crate::error::HostError::Protocol {
            command: "SELECT",
            fault: crate::error::ProtocolFault::NoCardId,
        };
        let record = || {
            Arc::new(RecordError::Inconsistent {
                db: "r.sqlite".into(),
                what: "two claims of one card",
            })
        };
        let store_text = "record database r.sqlite: two claims of one card";
        assert_eq!(
            ProvisionFailure::Select(host.clone()).to_string(),
            host.to_string()
        );
        assert_eq!(
            ProvisionFailure::Card(host.clone()).to_string(),
            host.to_string()
        );
        assert_eq!(ProvisionFailure::Claim(record()).to_string(), store_text);
        assert_eq!(
            ProvisionFailure::NotRecorded(record()).to_string(),
            format!("provisioned, but the record was not written: {store_text}")
        );
        assert_eq!(
            ProvisionFailure::WorkerStopped.to_string(),
            "the worker stopped unexpectedly"
        );
        assert_eq!(
            ProvisionFailure::Keys(KeyInstallError::NoCardId).to_string(),
            "no card ID after the authority session opened"
        );
        // Record store errors are equal when they read the same.
        assert_eq!(
            ProvisionFailure::NotRecorded(record()),
            ProvisionFailure::NotRecorded(record())
        );
        assert_ne!(
            ProvisionFailure::NotRecorded(record()),
            ProvisionFailure::Claim(record())
        );
        assert_ne!(
            ProvisionFailure::Select(host.clone()),
            ProvisionFailure::Card(host)
        );
    }
}
