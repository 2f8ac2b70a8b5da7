//! Fixtures shared by dmsc's tests and benchmarks (a dev-dependency only,
//! never published):
//!
//! - [`TEST_KEY`] / [`TEST_KEY_HEX`]: the GlobalPlatform test key the test
//!   cards' authorities are made with;
//! - [`openssl`]: runs the `openssl` command line tool in a directory;
//! - [`SAMPLE_POLICY`]: the sample enterprise policy of the policy tests;
//! - [`Counting`]: a transport that counts the APDUs that pass and can act as
//!   a card pulled out after some;
//! - [`pg::PrivatePostgres`]: a private PostgreSQL server on a Unix socket in
//!   a temporary directory, stopped when dropped.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod pg;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dmsc_host::{Transport, TransportError};

/// The GlobalPlatform test key (`40 41 … 4F`), AES-128.
pub const TEST_KEY: [u8; 16] = *b"@ABCDEFGHIJKLMNO";

/// [`TEST_KEY`] in hex, as the CLI takes keys.
pub const TEST_KEY_HEX: &str = "404142434445464748494A4B4C4D4E4F";

/// The sample enterprise policy (docs/policy.md) the policy tests use: ACME,
/// Europe/Paris, a declared resource `torch` enabled by default, a site `lab`,
/// camera and USB off during working hours (rule `work-hours`, Monday to
/// Friday 08:00-18:00) and Bluetooth and the torch off inside the lab (rule
/// `lab-radio`). A test that needs a variant derives it from this text (e.g.
/// with `str::replace`) and says why.
pub const SAMPLE_POLICY: &str = r#"format = "dmsc-policy"
version = 1
name = "ACME"
timezone = "Europe/Paris"
declare = ["torch"]

[defaults]
torch = "enabled"

[sites.lab]
polygon = [[48.70, 2.17], [48.70, 2.19], [48.72, 2.19], [48.72, 2.17]]

[[rules]]
id = "work-hours"
effect = "disable"
resources = ["camera", "usb"]
days = ["mon-fri"]
from = "08:00"
to = "18:00"

[[rules]]
id = "lab-radio"
effect = "disable"
resources = ["bluetooth", "torch"]
inside = ["lab"]
"#;

/// Runs `openssl ARGS` in `dir` and returns its standard output; panics with
/// openssl's standard error when it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A transport that counts the APDUs that pass and, with `pull_after`, acts as
/// a card pulled out after that many. Inside a transaction the count goes on.
pub struct Counting<T> {
    /// The transport the APDUs go to.
    pub inner: T,
    /// APDUs sent so far (shared, so that a test can read it while a session
    /// owns the transport).
    pub count: Arc<AtomicUsize>,
    /// After this many APDUs, every APDU fails as if the card were removed.
    pub pull_after: Option<usize>,
}

impl<T: Transport> Transport for Counting<T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        if self.pull_after.is_some_and(|limit| n >= limit) {
            return Err(TransportError::CardRemoved);
        }
        self.inner.transmit(apdu)
    }
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn reader_name(&self) -> &str {
        self.inner.reader_name()
    }
    fn supports_extended(&self) -> bool {
        self.inner.supports_extended()
    }
    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        let (count, pull_after) = (self.count.clone(), self.pull_after);
        self.inner.exclusive(&mut |t: &mut dyn Transport| {
            body(&mut Counting {
                inner: t,
                count: count.clone(),
                pull_after,
            })
        })
    }
}
