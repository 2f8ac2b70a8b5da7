//! A private PostgreSQL server for the record-store tests and benchmarks:
//! Debian's server binaries (`postgresql`, installed by `.ci/install-deps`),
//! a new cluster in a temporary directory, listening only on a Unix socket in
//! that directory, stopped (`pg_ctl stop -m immediate`) when dropped, also
//! when the test panics.
//!
//! `initdb` and `postgres` refuse to run as root: as root (the tests in CI),
//! the server runs as `nobody` (through `runuser`) and the directory is
//! handed to that user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian puts the server binaries (overridden by `DMSC_PG_BIN`).
pub const DEBIAN_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The superuser of the private cluster (trust authentication on its socket).
pub const SUPERUSER: &str = "dmsc";

/// The socket's port number (only part of the socket's file name).
pub const PORT: u16 = 5432;

/// A running private PostgreSQL.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_nobody: bool,
    running: bool,
}

fn bin_dir() -> PathBuf {
    let bin = std::env::var_os("DMSC_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_PG_BIN));
    for tool in ["initdb", "pg_ctl", "postgres", "pg_dump"] {
        assert!(
            bin.join(tool).is_file(),
            "{} not found: the PostgreSQL server (Debian package postgresql) is missing; \
             run .ci/install-deps (or set DMSC_PG_BIN to the directory of initdb and pg_ctl)",
            bin.join(tool).display()
        );
    }
    bin
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("id runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn check(what: &str, out: std::io::Result<Output>, log: &Path) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    if !out.status.success() {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!(
            "{what} failed ({}):\n{}{}\n--- server log ---\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

impl PrivatePostgres {
    /// Creates a cluster in a new temporary directory and starts it; panics
    /// (saying what to install) when the server binaries are missing.
    pub fn start() -> PrivatePostgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("dmsc-pg.")
            .tempdir()
            .expect("temporary directory");
        let as_nobody = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
            == 0;
        if as_nobody {
            let (uid, gid) = (id(&["-u", "nobody"]), id(&["-g", "nobody"]));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown to nobody");
        }
        let mut pg = PrivatePostgres {
            dir,
            bin,
            as_nobody,
            running: false,
        };
        let data = pg.data();
        let out = pg
            .server_tool("initdb")
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
                "-D",
            ])
            .arg(&data)
            .output();
        check("initdb", out, &pg.log());
        pg.start_again();
        pg
    }

    /// Starts the server again after [`PrivatePostgres::stop`].
    pub fn start_again(&mut self) {
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {PORT}",
            self.socket_dir().display()
        );
        let out = self
            .server_tool("pg_ctl")
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(self.log())
            .arg("-D")
            .arg(self.data())
            .arg("start")
            .output();
        check("pg_ctl start", out, &self.log());
        self.running = true;
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): the database is
    /// down until [`PrivatePostgres::start_again`].
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let out = self
            .server_tool("pg_ctl")
            .args(["-w", "-t", "60", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
        check("pg_ctl stop", out, &self.log());
    }

    /// A server binary, run as `nobody` when we are root, in the directory.
    fn server_tool(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(self.dir.path()).env_remove("PGDATA");
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The directory of the server's socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A libpq key-value connection string for database `db` as `user`.
    pub fn conninfo(&self, db: &str, user: &str) -> String {
        format!(
            "host={} port={PORT} user={user} dbname={db}",
            self.socket_dir().display()
        )
    }

    /// The same as a `postgresql://` URL (the socket directory percent-encoded).
    pub fn url(&self, db: &str, user: &str) -> String {
        let dir = self.socket_dir().display().to_string().replace('/', "%2F");
        format!("postgresql://{user}@{dir}:{PORT}/{db}")
    }

    /// A connection to `db` as the superuser.
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.conninfo(db, SUPERUSER), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the private PostgreSQL: {e}"))
    }

    /// Runs SQL statements on `db` as the superuser.
    pub fn sql(&self, db: &str, statements: &str) {
        self.client(db)
            .batch_execute(statements)
            .unwrap_or_else(|e| panic!("{statements}: {e}"));
    }

    /// Creates database `name`.
    pub fn create_db(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// Everything in `db` as SQL text (`pg_dump`), to search it.
    pub fn dump(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["-h"])
            .arg(self.socket_dir())
            .args(["-p", &PORT.to_string(), "-U", SUPERUSER, db])
            .output();
        String::from_utf8_lossy(&check("pg_dump", out, &self.log()).stdout).into_owned()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let _ = self
                .server_tool("pg_ctl")
                .args(["-w", "-t", "60", "-m", "immediate", "-D"])
                .arg(self.data())
                .arg("stop")
                .output();
        }
    }
}
