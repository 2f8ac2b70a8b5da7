//! The record store in PostgreSQL (`postgres`, the synchronous client):
//! several stations share one job.
//!
//! The claim algorithm and its SQL are the SQLite store's (see the parent
//! module); PostgreSQL adds what several machines need:
//!
//! - the claim's transaction reads the claim row `FOR UPDATE` after an
//!   `INSERT … ON CONFLICT DO NOTHING` on the primary key (job, card ID): two
//!   stations claiming a card are ordered by the database, and the second
//!   sees the first's committed claim;
//! - a station works on a card while one of its connections holds a
//!   session-level advisory lock on the card (`pg_try_advisory_lock` of a hash of job and
//!   card ID). The server releases it when the connection ends, so a claim
//!   `in_progress` whose lock is free was left by a station that stopped
//!   (killed, crashed, cut off), and any station takes it over; a claim whose
//!   lock is held is being worked on, whatever the station's name.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use postgres::config::Host;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls};

use super::{
    check_writable_in, claim_in, claim_status_in, finish_in, records_in, AttemptStart, Backend,
    Claim, DbError, Kind, Record, RecordError, Records, Status, Tx, UsedKeys, Value,
    SCHEMA_VERSION,
};

/// The schema, version 1: the SQLite schema with 64-bit integers. (`IF NOT
/// EXISTS`: a station that waited for another's migration may still read the
/// catalog as it was before that one committed.)
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS claims (
    job TEXT NOT NULL,
    card_id TEXT NOT NULL,
    station TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'provisioned', 'failed')),
    attempt BIGINT NOT NULL,
    PRIMARY KEY (job, card_id)
);
CREATE TABLE IF NOT EXISTS attempts (
    job TEXT NOT NULL,
    card_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    station TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'provisioned', 'failed')),
    profile_digest TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    kcv_enc TEXT,
    kcv_mac TEXT,
    kcv_dek TEXT,
    started TEXT NOT NULL,
    finished TEXT,
    error TEXT,
    PRIMARY KEY (job, card_id, attempt)
);
";

/// The transaction-level advisory lock that orders schema migrations of
/// stations starting together ("dmsc" and 1).
const MIGRATION_LOCK: i64 = 0x646D_7363_0000_0001;

/// The record store: a PostgreSQL database.
///
/// One connection per card being worked on (the connection that holds the
/// card's advisory lock, from its claim to the end of the attempt), taken
/// from a pool of idle connections: the claims and records of a station's
/// readers commit side by side.
pub struct PgRecords {
    name: String,
    config: Config,
    pool: Mutex<Pool>,
    /// The cards a connection of this store holds (advisory locks taken).
    held: Mutex<HashSet<String>>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Client>,
    holding: HashMap<String, Client>,
}

impl std::fmt::Debug for PgRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgRecords({})", self.name)
    }
}

/// The connection string as messages show it: users, hosts (or socket
/// directories), ports and database, never the password.
fn printable(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgresql://{}@{}{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        if ports.is_empty() {
            String::new()
        } else {
            format!(":{}", ports.join(","))
        },
        config.get_dbname().unwrap_or("")
    )
}

fn pg_err<'a>(
    name: &'a str,
    what: &'static str,
) -> impl FnOnce(postgres::Error) -> RecordError + 'a {
    move |source| RecordError::Db {
        path: name.to_string(),
        what,
        source: DbError::Postgres(source),
    }
}

/// `?N` placeholders as `$N`.
fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn pg_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync + '_)> {
    params
        .iter()
        .map(|v| match v {
            Value::Text(t) => t as &(dyn ToSql + Sync),
            Value::Int(i) => i as &(dyn ToSql + Sync),
        })
        .collect()
}

fn try_lock(client: &mut impl postgres::GenericClient, key: &str) -> Result<bool, postgres::Error> {
    client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&key],
        )?
        .try_get(0)
}

fn unlock(client: &mut Client, key: &str) {
    // The connection may be gone: then so is the lock.
    let _ = client.execute(
        "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
        &[&key],
    );
}

struct PgTx<'a, 'c> {
    tx: postgres::Transaction<'c>,
    held: &'a Mutex<HashSet<String>>,
    acquired: &'a mut Vec<String>,
    name: &'a str,
}

impl PgTx<'_, '_> {
    fn try_hold(&mut self, key: &str) -> Result<bool, RecordError> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains(key) {
            // Another worker of this station is on the card.
            return Ok(false);
        }
        let got = try_lock(&mut self.tx, key).map_err(pg_err(self.name, "locking the card"))?;
        if got {
            held.insert(key.to_string());
            self.acquired.push(key.to_string());
        }
        Ok(got)
    }
}

impl Tx for PgTx<'_, '_> {
    fn execute(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, RecordError> {
        self.tx
            .execute(&dollar_params(sql), &pg_params(params))
            .map_err(pg_err(self.name, what))
    }

    fn query(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
        kinds: &[Kind],
    ) -> Result<Vec<Vec<Value>>, RecordError> {
        let rows = self
            .tx
            .query(&dollar_params(sql), &pg_params(params))
            .map_err(pg_err(self.name, what))?;
        rows.iter()
            .map(|r| {
                kinds
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        Ok(match k {
                            Kind::Text => Value::Text(r.try_get(i)?),
                            Kind::Int => Value::Int(r.try_get(i)?),
                        })
                    })
                    .collect::<Result<Vec<_>, postgres::Error>>()
                    .map_err(pg_err(self.name, what))
            })
            .collect()
    }

    fn lock_rows(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn holder_stopped(&mut self, key: &str, _holder: &str, _me: &str) -> Result<bool, RecordError> {
        // Its lock is free only when the connection that claimed it ended.
        self.try_hold(key)
    }

    fn hold(&mut self, key: &str) -> Result<bool, RecordError> {
        self.try_hold(key)
    }
}

impl PgRecords {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection holding `holding`, or an idle one, or a new one.
    fn take(&self, holding: Option<&str>) -> Result<(Client, bool), RecordError> {
        {
            let mut pool = self.pool();
            if let Some(c) = holding.and_then(|k| pool.holding.remove(k)) {
                return Ok((c, true));
            }
            if let Some(c) = pool.idle.pop() {
                return Ok((c, false));
            }
        }
        let c = self
            .config
            .connect(NoTls)
            .map_err(pg_err(&self.name, "connecting"))?;
        Ok((c, false))
    }

    fn put_back(&self, client: Client, holding: Option<String>) {
        let mut pool = self.pool();
        match holding {
            Some(key) => {
                pool.holding.insert(key, client);
            }
            None if !client.is_closed() => pool.idle.push(client),
            None => {}
        }
    }
}

impl Backend for PgRecords {
    fn name(&self) -> &str {
        &self.name
    }

    fn transaction<R>(
        &self,
        what: &'static str,
        commit: bool,
        holding: Option<&str>,
        body: impl FnOnce(&mut dyn Tx) -> Result<R, RecordError>,
    ) -> Result<R, RecordError> {
        let (mut client, was_holding) = self.take(holding)?;
        let mut acquired = Vec::new();
        let result = match client.transaction() {
            Err(e) => Err(pg_err(&self.name, what)(e)),
            Ok(tx) => {
                let mut t = PgTx {
                    tx,
                    held: &self.held,
                    acquired: &mut acquired,
                    name: &self.name,
                };
                match body(&mut t) {
                    Ok(r) if commit => t.tx.commit().map(|()| r).map_err(pg_err(&self.name, what)),
                    // Dropped: rolled back.
                    other => other,
                }
            }
        };
        let mut keep = if was_holding {
            holding.map(str::to_string)
        } else {
            None
        };
        if result.is_err() {
            // Locks are not transactional: give back those taken in vain.
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            for key in &acquired {
                held.remove(key);
                unlock(&mut client, key);
            }
        } else if let Some(key) = acquired.into_iter().next() {
            keep = Some(key);
        }
        self.put_back(client, keep);
        result
    }

    fn release(&self, key: &str) {
        let client = self.pool().holding.remove(key);
        if let Some(mut client) = client {
            unlock(&mut client, key);
            self.put_back(client, None);
        }
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

impl PgRecords {
    /// Connects to the database named by `conninfo` (`postgres://…`,
    /// `postgresql://…` or libpq key-value pairs such as `host=/run/dir
    /// dbname=line`) and migrates its schema to [`SCHEMA_VERSION`]. A connect
    /// timeout of 10 s applies unless the string sets one.
    pub fn open(conninfo: &str) -> Result<PgRecords, RecordError> {
        let mut config: Config = conninfo.parse().map_err(|source| RecordError::BadUrl {
            path: "(connection string not shown: it may hold a password)".into(),
            source,
        })?;
        let name = printable(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let mut client = config.connect(NoTls).map_err(pg_err(&name, "connecting"))?;
        migrate(&mut client, &name)?;
        Ok(PgRecords {
            name,
            config,
            pool: Mutex::new(Pool {
                idle: vec![client],
                holding: HashMap::new(),
            }),
            held: Mutex::new(HashSet::new()),
        })
    }
}

/// The schema version, 0 when there is no schema yet.
fn schema_version(
    client: &mut impl postgres::GenericClient,
    name: &str,
) -> Result<i64, RecordError> {
    let table: Option<String> = client
        .query_one("SELECT to_regclass('dmsc_schema')::text", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg_err(name, "reading the schema version"))?;
    if table.is_none() {
        return Ok(0);
    }
    client
        .query_one("SELECT coalesce(max(version), 0) FROM dmsc_schema", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg_err(name, "reading the schema version"))
}

fn migrate(client: &mut Client, name: &str) -> Result<(), RecordError> {
    // Nothing is written when the schema is current: a read-only role can
    // still export the records.
    if schema_version(client, name)? == SCHEMA_VERSION {
        return Ok(());
    }
    let mut tx = client
        .transaction()
        .map_err(pg_err(name, "starting the schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg_err(
            name,
            "waiting for another station's schema migration",
        ))?;
    let version = schema_version(&mut tx, name)?;
    if version > SCHEMA_VERSION {
        return Err(RecordError::NewerSchema {
            path: name.to_string(),
            found: version,
        });
    }
    if version < 1 {
        tx.batch_execute(SCHEMA_V1)
            .map_err(pg_err(name, "creating the schema (version 1)"))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS dmsc_schema (version BIGINT NOT NULL)")
            .map_err(pg_err(name, "creating the schema (version 1)"))?;
    }
    tx.execute("DELETE FROM dmsc_schema", &[])
        .and_then(|_| {
            tx.execute(
                "INSERT INTO dmsc_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
        })
        .map_err(pg_err(name, "writing the schema version"))?;
    tx.commit()
        .map_err(pg_err(name, "committing the schema migration"))
}

super::records_on_backend!(PgRecords);

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use dmsc_test_support::pg::PrivatePostgres;

    /// The claim algorithm on PostgreSQL with the liveness check removed: a
    /// claim `in_progress` is taken over as if its station had stopped.
    struct NoLivenessCheck<'a>(&'a PgRecords);

    struct Broken<'t>(&'t mut dyn Tx);

    impl Tx for Broken<'_> {
        fn execute(
            &mut self,
            what: &'static str,
            sql: &str,
            params: &[Value],
        ) -> Result<u64, RecordError> {
            self.0.execute(what, sql, params)
        }
        fn query(
            &mut self,
            what: &'static str,
            sql: &str,
            params: &[Value],
            kinds: &[Kind],
        ) -> Result<Vec<Vec<Value>>, RecordError> {
            self.0.query(what, sql, params, kinds)
        }
        fn lock_rows(&self) -> &'static str {
            self.0.lock_rows()
        }
        fn holder_stopped(&mut self, _: &str, _: &str, _: &str) -> Result<bool, RecordError> {
            Ok(true)
        }
        fn hold(&mut self, key: &str) -> Result<bool, RecordError> {
            self.0.hold(key)
        }
    }

    impl Backend for NoLivenessCheck<'_> {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn transaction<R>(
            &self,
            what: &'static str,
            commit: bool,
            holding: Option<&str>,
            body: impl FnOnce(&mut dyn Tx) -> Result<R, RecordError>,
        ) -> Result<R, RecordError> {
            self.0
                .transaction(what, commit, holding, |tx| body(&mut Broken(tx)))
        }
        fn release(&self, key: &str) {
            self.0.release(key)
        }
    }

    /// Self-test of the takeover check: without it, a second station takes
    /// a card that a live station is working on (two stations provision
    /// it); with it, the card is busy until the first station's connection
    /// ends, and then taken over.
    #[test]
    fn the_takeover_check_catches_a_claim_of_a_live_stations_card() {
        let pg = PrivatePostgres::start();
        pg.create_db("once");
        let url = pg.conninfo("once", "dmsc");
        let a = PgRecords::open(&url).expect("station A");
        let b = PgRecords::open(&url).expect("station B");
        let start = |card: &'static str, station: &'static str| AttemptStart {
            job: "J",
            card_id: card,
            station,
            profile_digest: "AB",
            key_version: 0x30,
            started: jiff::Timestamp::UNIX_EPOCH,
        };
        assert!(matches!(
            a.claim(&start("C1", "A")).expect("claim"),
            Claim::Claimed { attempt: 1, .. }
        ));
        assert!(matches!(
            a.claim(&start("C2", "A")).expect("claim"),
            Claim::Claimed { attempt: 1, .. }
        ));
        // Broken variant: B takes C1 while A works on it.
        assert!(
            matches!(
                claim_in(&NoLivenessCheck(&b), &start("C1", "B")).expect("claim"),
                Claim::Claimed { attempt: 2, .. }
            ),
            "without the check, the live station's card is given away"
        );
        // The real claim: C2 is busy while A lives.
        assert_eq!(
            b.claim(&start("C2", "B")).expect("claim"),
            Claim::InProgressElsewhere {
                station: "A".into()
            }
        );
    }

    #[test]
    fn placeholders_and_the_printable_form() {
        assert_eq!(
            dollar_params("a = ?1 AND b = ?12 OR c = '?'"),
            "a = $1 AND b = $12 OR c = '?'"
        );
        let c: Config = "postgresql://line:s3cret@db.example:5433/records"
            .parse()
            .expect("url");
        assert_eq!(printable(&c), "postgresql://line@db.example:5433/records");
        let c: Config = "host=/tmp/pg dbname=line user=station password=s3cret"
            .parse()
            .expect("key-value");
        assert_eq!(printable(&c), "postgresql://station@/tmp/pg/line");
        let e = PgRecords::open("postgresql://u:s3cret@h:notaport/db")
            .expect_err("bad port")
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
