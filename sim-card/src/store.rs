//! Persistent memory for the applet: a record store with atomic transactions.
//!
//! The applet keeps a decoded mirror of every record in RAM and writes through
//! this trait. Every state-changing command is one transaction (some commands,
//! such as VERIFY, are two: the try counter is committed before the comparison).
//! A store must guarantee that after a power cut at any point the records are
//! those of the last completed `commit`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A record key (the applet uses short ASCII paths such as `meta` or `obj/…`).
pub type Key = Vec<u8>;

/// Every committed record: a map from key to value that wipes every value
/// when it is dropped (values hold the PIN, the PUK, the identity secret and
/// the authority and bootstrap keys in clear, as a chip's EEPROM does).
///
/// It dereferences to the `BTreeMap`. What is not wiped: keys (record names,
/// not secret); the old buffers a `Vec` leaves behind when it grows; values
/// moved out with `into_iter`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Records(BTreeMap<Key, Vec<u8>>);

impl Records {
    /// No records.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            value.zeroize();
        }
    }
}

impl core::ops::Deref for Records {
    type Target = BTreeMap<Key, Vec<u8>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl core::ops::DerefMut for Records {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(Key, Vec<u8>)> for Records {
    fn from_iter<I: IntoIterator<Item = (Key, Vec<u8>)>>(iter: I) -> Self {
        Records(iter.into_iter().collect())
    }
}

impl Extend<(Key, Vec<u8>)> for Records {
    fn extend<I: IntoIterator<Item = (Key, Vec<u8>)>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for Records {
    type Item = (Key, Vec<u8>);
    type IntoIter = alloc::collections::btree_map::IntoIter<Key, Vec<u8>>;
    /// The values moved out are no longer wiped by `Records`.
    fn into_iter(mut self) -> Self::IntoIter {
        core::mem::take(&mut self.0).into_iter()
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = (&'a Key, &'a Vec<u8>);
    type IntoIter = alloc::collections::btree_map::Iter<'a, Key, Vec<u8>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Why persistent memory could not be read or written.
///
/// Each variant carries typed data; its `Display` text names the file (where
/// there is one) and the defect or the failed operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Power was lost (fault injection): the card is mute until powered up again.
    PowerLost,
    /// The stored state is unreadable.
    Corrupt {
        /// The state file, as given when it was opened; `None` when the
        /// defect was found in the records themselves, whatever holds them.
        path: Option<String>,
        /// What is wrong with the state.
        defect: StateDefect,
    },
    /// An operating-system I/O error.
    Io {
        /// The state file, as given when it was created or opened; `None`
        /// when no file is involved (e.g. [`IoOperation::Randomness`]).
        path: Option<String>,
        /// What the store was doing.
        operation: IoOperation,
        /// The operating system's error, if one was returned; the text
        /// quotes it.
        cause: Option<OsError>,
    },
    /// Another process (or another handle) holds the card state: its
    /// exclusive lock is taken.
    InUse {
        /// The state file, as given when it was opened.
        path: String,
        /// How the lock could not be taken.
        conflict: LockConflict,
    },
    /// The state file was replaced, renamed, removed or given a second name
    /// (hard link) under the running card; nothing was written and the
    /// committed state in memory is unchanged.
    Replaced {
        /// The state file, as given when it was opened.
        path: String,
        /// What was found at the path.
        found: ReplacedHow,
    },
    /// A call out of order, such as `write` outside a transaction.
    Misuse(&'static str),
}

impl StoreError {
    /// The state file named by the error, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            StoreError::Corrupt { path, .. } | StoreError::Io { path, .. } => path.as_deref(),
            StoreError::InUse { path, .. } | StoreError::Replaced { path, .. } => Some(path),
            StoreError::PowerLost | StoreError::Misuse(_) => None,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::PowerLost => f.write_str("power lost during a persistent write"),
            StoreError::Corrupt { path, defect } => {
                f.write_str("card state is corrupt: ")?;
                if let Some(path) = path {
                    write!(f, "{path}: ")?;
                }
                write!(f, "{defect}")
            }
            StoreError::Io {
                path,
                operation,
                cause,
            } => {
                f.write_str("card state I/O error: ")?;
                if let Some(path) = path {
                    write!(f, "{path}: ")?;
                }
                operation.write_with(cause.as_ref(), f)
            }
            StoreError::InUse { path, conflict } => {
                write!(f, "card state in use: {path}: {conflict}")
            }
            StoreError::Replaced { path, found } => {
                write!(f, "card state file replaced: {path}: {found}")
            }
            StoreError::Misuse(s) => write!(f, "store misuse: {s}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StoreError {}

/// A defect found in the records themselves: [`StoreError::Corrupt`] with no path.
impl From<StateDefect> for StoreError {
    fn from(defect: StateDefect) -> Self {
        StoreError::Corrupt { path: None, defect }
    }
}

/// What is wrong with a stored card state: a defect of the state file's
/// layout (see the `file_store` module) or of the applet's records in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDefect {
    /// The file holds no byte at all.
    Empty,
    /// The file does not start with the card state magic.
    WrongMagic {
        /// The file's first bytes (at most as many as the magic).
        found: Vec<u8>,
        /// The magic every card state starts with.
        expected: [u8; 8],
    },
    /// The file is shorter than an empty card state.
    Truncated {
        /// The file's size in bytes.
        len: usize,
        /// The size of an empty card state.
        minimum: usize,
    },
    /// The header declares a format version this build does not read.
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
        /// The version this build reads.
        supported: u16,
        /// Whether the file's checksum matched, which tells a newer file
        /// from a damaged header.
        checksum: ChecksumCheck,
    },
    /// The trailing CRC-32 does not match the file's contents.
    ChecksumMismatch {
        /// The CRC-32 stored in the file.
        stored: u32,
        /// The CRC-32 of the bytes before it.
        computed: u32,
        /// How the declared records fit the file, a hint at the cause.
        fit: RecordsFit,
    },
    /// Bytes follow the last record the header declares (checksum valid).
    TrailingBytes {
        /// How many bytes follow.
        bytes: usize,
        /// The record count in the header.
        count: u32,
    },
    /// A record's length field points past the end of the records (checksum valid).
    InconsistentLengths {
        /// The record's index, from 0.
        record: u32,
        /// The record count in the header.
        count: u32,
        /// The field that does not fit.
        field: RecordField,
        /// The bytes the field needs, its length field included.
        needed: u64,
        /// The bytes left before the checksum.
        left: usize,
    },
    /// A record's key is not greater than the previous one: duplicate or out
    /// of order (checksum valid).
    UnorderedKey {
        /// The record's index, from 0.
        record: u32,
        /// The record's key (the text quotes at most its first 48 bytes).
        key: Vec<u8>,
    },
    /// The store holds no record at all: no card was initialised in it.
    NoCard,
    /// A record the applet needs is absent.
    MissingRecord(AppletRecord),
    /// A record of the applet cannot be decoded.
    MalformedRecord(AppletRecord),
    /// The applet state was written in a version this build does not read.
    AppletVersion {
        /// The version field as stored.
        found: Vec<u8>,
    },
    /// A record whose key the applet does not know.
    UnknownRecord {
        /// The record's key.
        key: Vec<u8>,
    },
}

/// Keys quoted in error texts are cut to this many bytes.
const QUOTE_LEN: usize = 48;

/// Writes `bytes` as hex pairs separated by spaces, e.g. `44 4D 53`.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{b:02X}")?;
    }
    Ok(())
}

impl fmt::Display for StateDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDefect::Empty => {
                f.write_str("file is empty (0 bytes); expected a dmsc card state")
            }
            StateDefect::WrongMagic { found, expected } => {
                f.write_str("not a dmsc card state: wrong magic ")?;
                write_hex(f, found)?;
                f.write_str(" (expected ")?;
                write_hex(f, expected)?;
                write!(f, ", \"{}\")", expected.escape_ascii())
            }
            StateDefect::Truncated { len, minimum } => write!(
                f,
                "truncated: file is {len} bytes, shorter than the {minimum}-byte \
                 minimum of an empty card state"
            ),
            StateDefect::UnsupportedVersion {
                found,
                supported,
                checksum,
            } => {
                write!(
                    f,
                    "unsupported format version {found} (this build reads version {supported})"
                )?;
                match checksum {
                    ChecksumCheck::Valid if found > supported => {
                        f.write_str("; it was probably written by a newer dmsc")
                    }
                    ChecksumCheck::Valid | ChecksumCheck::Absent => Ok(()),
                    ChecksumCheck::Invalid => f.write_str(
                        "; the checksum does not match either, so the header is probably damaged",
                    ),
                }
            }
            StateDefect::ChecksumMismatch {
                stored,
                computed,
                fit,
            } => {
                write!(
                    f,
                    "checksum mismatch (stored {stored:08X}, computed {computed:08X})"
                )?;
                match fit {
                    RecordsFit::Exact => Ok(()),
                    RecordsFit::Excess { bytes } => write!(
                        f,
                        "; {bytes} unexpected bytes follow the declared records and checksum"
                    ),
                    RecordsFit::Overrun { count, len } => write!(
                        f,
                        "; the {count} records the header declares do not fit with their \
                         checksum in the {len}-byte file, so it is probably truncated \
                         (or a length field is damaged)"
                    ),
                }
            }
            StateDefect::TrailingBytes { bytes, count } => write!(
                f,
                "{bytes} trailing bytes after the last of the {count} records the header declares"
            ),
            StateDefect::InconsistentLengths {
                record,
                count,
                field,
                needed,
                left,
            } => write!(
                f,
                "inconsistent lengths: record {record} of {count} needs {needed} bytes for its \
                 {field} (length field included) but only {left} bytes remain before the checksum"
            ),
            StateDefect::UnorderedKey { record, key } => {
                write!(f, "record {record}: key ")?;
                match key.get(..QUOTE_LEN) {
                    Some(head) if key.len() > QUOTE_LEN => {
                        write!(f, "\"{}\"...", head.escape_ascii())?
                    }
                    _ => write!(f, "\"{}\"", key.escape_ascii())?,
                }
                f.write_str(" is not greater than the previous key (duplicate or out of order)")
            }
            StateDefect::NoCard => f.write_str("the store holds no card (not initialised)"),
            StateDefect::MissingRecord(record) => write!(f, "record {record} is missing"),
            StateDefect::MalformedRecord(record) => write!(f, "record {record} is malformed"),
            StateDefect::AppletVersion { found } => {
                write!(f, "unsupported applet state version {found:?}")
            }
            StateDefect::UnknownRecord { key } => {
                write!(f, "unknown record {:?}", String::from_utf8_lossy(key))
            }
        }
    }
}

/// Whether a state file's checksum matched, as far as it could be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumCheck {
    /// The stored CRC-32 matches the contents.
    Valid,
    /// The stored CRC-32 does not match the contents.
    Invalid,
    /// The file is too short to hold a checksum.
    Absent,
}

/// How the records a header declares fit a file whose checksum does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordsFit {
    /// They end exactly at the checksum: a byte was changed.
    Exact,
    /// Bytes follow the declared records and checksum.
    Excess {
        /// How many bytes follow.
        bytes: usize,
    },
    /// They do not fit: the file was cut short or a length is damaged.
    Overrun {
        /// The record count in the header.
        count: u32,
        /// The file's size in bytes.
        len: usize,
    },
}

/// A field of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordField {
    /// The record's key.
    Key,
    /// The record's value.
    Value,
}

impl fmt::Display for RecordField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordField::Key => "key",
            RecordField::Value => "value",
        })
    }
}

/// A record (or family of records) of the applet's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppletRecord {
    /// `meta`: card identity, counters and limits.
    Meta,
    /// `pin`: the PIN and its try counter.
    Pin,
    /// `puk`: the PUK and its try counter.
    Puk,
    /// `fail/…`: a failure counter.
    Fail,
    /// `obj/…`: a stored object.
    Obj,
    /// `auth/…`: an authority's keys.
    Auth,
    /// `audit/…`: an audit entry.
    Audit,
    /// `approved`: the package approved for installation.
    Approved,
}

impl fmt::Display for AppletRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppletRecord::Meta => "meta",
            AppletRecord::Pin => "pin",
            AppletRecord::Puk => "puk",
            AppletRecord::Fail => "fail",
            AppletRecord::Obj => "obj",
            AppletRecord::Auth => "auth",
            AppletRecord::Audit => "audit",
            AppletRecord::Approved => "approved",
        })
    }
}

/// What a store was doing when an I/O operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoOperation {
    /// Creating a card state where a file already exists.
    CreateOverExisting,
    /// Creating a card state: a file appeared at the path meanwhile.
    AppearedDuringCreate,
    /// Checking whether a file exists at the path.
    CheckExists,
    /// Resolving the path's directory (symbolic links followed).
    ResolveDirectory,
    /// Opening a card state file that does not exist (the text leaves the
    /// cause out).
    OpenMissing,
    /// Reading (or opening and locking) the card state file.
    Read,
    /// Checking the identity of the locked file.
    CheckLocked,
    /// Checking that the path still names the held state file.
    CheckState,
    /// A step on the temporary file a commit writes.
    TempFile {
        /// The step.
        step: TempFileStep,
        /// The temporary file.
        tmp: String,
    },
    /// Renaming a file over the card state.
    RenameOver {
        /// The file renamed.
        from: String,
    },
    /// Syncing the directory after a card state was replaced.
    SyncDirectory,
    /// Syncing the directory after a commit's rename: the new state is in
    /// place but may not be durable; the card state must be reopened.
    SyncAfterCommit,
    /// Keeping the lock on a commit's new state file: the card state must
    /// be reopened.
    LockAfterCommit,
    /// Seeding the card's random generator from the operating system.
    Randomness,
}

impl IoOperation {
    /// Writes the operation, with `cause` where the text places it.
    fn write_with(&self, cause: Option<&OsError>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoOperation::CreateOverExisting => {
                return f.write_str("already exists; refusing to overwrite an existing card state")
            }
            IoOperation::AppearedDuringCreate => {
                return f.write_str(
                    "already exists (it appeared while the card was being created); \
                     refusing to overwrite an existing card state",
                )
            }
            IoOperation::OpenMissing => return f.write_str("card state file does not exist"),
            IoOperation::SyncAfterCommit | IoOperation::LockAfterCommit => {
                f.write_str(if *self == IoOperation::SyncAfterCommit {
                    "cannot sync the directory after replacing the card state"
                } else {
                    "cannot keep the new card state locked"
                })?;
                if let Some(cause) = cause {
                    write!(f, " ({cause})")?;
                }
                return f.write_str("; reopen the card state");
            }
            IoOperation::CheckExists => f.write_str("cannot check whether it exists")?,
            IoOperation::ResolveDirectory => f.write_str("cannot resolve its directory")?,
            IoOperation::Read => f.write_str("cannot read card state")?,
            IoOperation::CheckLocked => f.write_str("cannot check the locked file")?,
            IoOperation::CheckState => f.write_str("cannot check the state file")?,
            IoOperation::TempFile { step, tmp } => write!(f, "cannot {step} temporary file {tmp}")?,
            IoOperation::RenameOver { from } => write!(f, "cannot rename {from} over it")?,
            IoOperation::SyncDirectory => {
                f.write_str("cannot sync the directory after replacing the card state")?
            }
            IoOperation::Randomness => f.write_str("no operating-system randomness")?,
        }
        // The other operations are followed by `: <cause>`.
        match cause {
            Some(cause) => write!(f, ": {cause}"),
            None => Ok(()),
        }
    }
}

/// A step on a commit's temporary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempFileStep {
    /// Removing a stale one left by an earlier commit.
    RemoveStale,
    /// Creating and locking it.
    CreateAndLock,
    /// Writing the new state to it.
    Write,
    /// Syncing it to the medium.
    Sync,
}

impl fmt::Display for TempFileStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TempFileStep::RemoveStale => "remove stale",
            TempFileStep::CreateAndLock => "create and lock",
            TempFileStep::Write => "write",
            TempFileStep::Sync => "sync",
        })
    }
}

/// An error the operating system (or a simulated disk) returned: its error
/// number where there is one, and its text as the system gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsError {
    errno: Option<i32>,
    #[cfg(feature = "std")]
    kind: std::io::ErrorKind,
    text: String,
}

impl OsError {
    /// The operating system's error number (`errno` on Unix), if any.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    /// The category of the error.
    #[cfg(feature = "std")]
    pub fn kind(&self) -> std::io::ErrorKind {
        self.kind
    }

    /// An error with no [`std::io::Error`] behind it (e.g. a random-number source's).
    #[cfg(feature = "std")]
    pub(crate) fn other(errno: Option<i32>, text: String) -> Self {
        OsError {
            errno,
            kind: std::io::ErrorKind::Other,
            text,
        }
    }
}

#[cfg(feature = "std")]
impl From<&std::io::Error> for OsError {
    fn from(e: &std::io::Error) -> Self {
        OsError {
            errno: e.raw_os_error(),
            kind: e.kind(),
            text: alloc::string::ToString::to_string(e),
        }
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OsError {}

/// How another holder of a card state's lock was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockConflict {
    /// The exclusive lock is held by another process or handle.
    Held,
    /// The file was replaced every time it was about to be locked: another
    /// process keeps committing to it.
    ReplacedWhileLocking {
        /// How many times the lock was tried.
        attempts: usize,
    },
}

impl fmt::Display for LockConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockConflict::Held => f.write_str(
                "another process holds this card state (for example `dmsc sim serve`); \
                 stop it first",
            ),
            LockConflict::ReplacedWhileLocking { attempts } => write!(
                f,
                "the file was replaced {attempts} times while it was being locked; \
                 another process is writing it"
            ),
        }
    }
}

/// What was found at the path of a running card's state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplacedHow {
    /// Another file is at the resolved path.
    OtherFile {
        /// The resolved path (symbolic links followed).
        real: String,
    },
    /// Nothing is at the resolved path: the file was renamed or removed.
    Gone {
        /// The resolved path (symbolic links followed).
        real: String,
    },
    /// The state file has more than one name (hard link).
    HardLinks {
        /// How many names it has.
        names: u64,
        /// Whether the card was running (a commit was refused) rather than
        /// being opened.
        running: bool,
    },
}

impl fmt::Display for ReplacedHow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RUNNING: &str = " while the card was running";
        const NOTHING: &str = "; nothing was written";
        match self {
            ReplacedHow::OtherFile { real } => write!(
                f,
                "{real} is no longer the file this card opened (it was replaced){RUNNING}\
                 {NOTHING}. Another process may be running this card: stop both and reopen it"
            ),
            ReplacedHow::Gone { real } => write!(
                f,
                "{real} no longer exists (the file was renamed or removed){RUNNING}\
                 {NOTHING}. Another process may be running this card: stop both and reopen it"
            ),
            ReplacedHow::HardLinks { names, running } => {
                write!(f, "the state file has {names} names (hard links)")?;
                if *running {
                    write!(f, "{RUNNING}{NOTHING}")?;
                }
                f.write_str(
                    "; a card state must have exactly one, since every commit replaces the \
                     file and another name would keep a stale copy of the card: remove the \
                     other names",
                )
            }
        }
    }
}

/// Persistent memory with begin/commit/abort transactions.
///
/// `write` and `remove` are only valid between `begin` and `commit`/`abort`;
/// nothing they do is visible to `load` until `commit` returns `Ok`.
pub trait PersistentMemory {
    /// Every committed record, as read at power-up.
    fn load(&mut self) -> Result<Records, StoreError>;
    /// Starts a transaction.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Sets a record within the transaction.
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Removes a record within the transaction.
    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Makes the transaction's changes durable, all at once.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Drops the transaction's changes.
    fn abort(&mut self);
}

/// A staged change of one record (a written value is wiped when dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write this value.
    Write(Zeroizing<Vec<u8>>),
    /// Remove the record.
    Remove,
}

/// The changes of an open transaction, in key order (a later change of a key replaces an earlier one).
#[derive(Debug, Default, Clone)]
pub struct Journal {
    open: bool,
    changes: BTreeMap<Key, Change>,
}

impl Journal {
    /// Opens the journal.
    pub fn begin(&mut self) -> Result<(), StoreError> {
        if self.open {
            return Err(StoreError::Misuse("begin inside a transaction"));
        }
        self.open = true;
        self.changes.clear();
        Ok(())
    }

    /// Stages a change.
    pub fn stage(&mut self, key: &[u8], change: Change) -> Result<(), StoreError> {
        if !self.open {
            return Err(StoreError::Misuse("write outside a transaction"));
        }
        self.changes.insert(key.to_vec(), change);
        Ok(())
    }

    /// Closes the journal and returns its changes.
    pub fn take(&mut self) -> Result<BTreeMap<Key, Change>, StoreError> {
        if !self.open {
            return Err(StoreError::Misuse("commit outside a transaction"));
        }
        self.open = false;
        Ok(core::mem::take(&mut self.changes))
    }

    /// Drops staged changes.
    pub fn abort(&mut self) {
        self.open = false;
        self.changes.clear();
    }

    /// Applies changes to a record map.
    pub fn apply(records: &mut Records, changes: BTreeMap<Key, Change>) {
        for (k, c) in changes {
            match c {
                Change::Write(v) => {
                    records.insert(k, v.to_vec());
                }
                Change::Remove => {
                    records.remove(&k);
                }
            }
        }
    }
}

/// Persistent memory held in RAM (tests, in-process simulation, fault injection).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    committed: Records,
    journal: Journal,
    commits: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `records` (e.g. a snapshot taken earlier).
    pub fn with_records(records: Records) -> Self {
        MemoryStore {
            committed: records,
            ..Self::default()
        }
    }

    /// The committed records.
    pub fn records(&self) -> &Records {
        &self.committed
    }

    /// How many transactions were committed.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

impl PersistentMemory for MemoryStore {
    fn load(&mut self) -> Result<Records, StoreError> {
        Ok(self.committed.clone())
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.journal.begin()
    }
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.journal
            .stage(key, Change::Write(Zeroizing::new(value.to_vec())))
    }
    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.journal.stage(key, Change::Remove)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        let changes = self.journal.take()?;
        Journal::apply(&mut self.committed, changes);
        self.commits += 1;
        Ok(())
    }
    fn abort(&mut self) {
        self.journal.abort();
    }
}

impl<T: PersistentMemory + ?Sized> PersistentMemory for &mut T {
    fn load(&mut self) -> Result<Records, StoreError> {
        (**self).load()
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        (**self).begin()
    }
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        (**self).write(key, value)
    }
    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        (**self).remove(key)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        (**self).commit()
    }
    fn abort(&mut self) {
        (**self).abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;
    use alloc::string::ToString;

    #[test]
    fn applet_record_defects_are_typed_and_read_as_before() {
        let Err(e) = State::from_records(&Records::new()) else {
            panic!("a state without records was accepted");
        };
        assert_eq!(
            e,
            StoreError::Corrupt {
                path: None,
                defect: StateDefect::MissingRecord(AppletRecord::Meta),
            }
        );
        assert_eq!(
            e.to_string(),
            "card state is corrupt: record meta is missing"
        );

        let defect = StateDefect::UnknownRecord {
            key: b"x\xFFy".to_vec(),
        };
        assert_eq!(
            StoreError::from(defect).to_string(),
            "card state is corrupt: unknown record \"x\u{FFFD}y\""
        );
        let defect = StateDefect::AppletVersion {
            found: [9].to_vec(),
        };
        assert_eq!(defect.to_string(), "unsupported applet state version [9]");
    }

    #[cfg(feature = "std")]
    #[test]
    fn io_errors_are_typed_and_read_as_before() {
        let cause = OsError::from(&std::io::Error::other("medium gone"));
        assert_eq!(cause.errno(), None);
        assert_eq!(cause.kind(), std::io::ErrorKind::Other);
        let e = StoreError::Io {
            path: Some("card.state".into()),
            operation: IoOperation::LockAfterCommit,
            cause: Some(cause.clone()),
        };
        assert_eq!(
            e.to_string(),
            "card state I/O error: card.state: cannot keep the new card state locked \
             (medium gone); reopen the card state"
        );
        let e = StoreError::Io {
            path: Some("card.state".into()),
            operation: IoOperation::TempFile {
                step: TempFileStep::CreateAndLock,
                tmp: "card.state.tmp".into(),
            },
            cause: Some(cause),
        };
        assert_eq!(
            e.to_string(),
            "card state I/O error: card.state: cannot create and lock temporary file \
             card.state.tmp: medium gone"
        );
        let enoent = OsError::from(&std::io::Error::from_raw_os_error(2));
        assert_eq!(enoent.errno(), Some(2));
        assert_eq!(enoent.kind(), std::io::ErrorKind::NotFound);
    }
}
