//! Crash-safe persistent memory in one state file: a simulated card's EEPROM image.
//!
//! [`FileStore`] keeps every committed record in RAM and the open transaction
//! in a RAM journal; nothing reaches the disk before `commit`. A commit never
//! writes in place: it serialises all records to `<file>.tmp` in the same
//! directory, fsyncs it, renames it over `<file>` and fsyncs the directory
//! (two fsyncs per commit). After a crash at any point the file therefore
//! holds either the old or the new state, never a mix; a leftover
//! `<file>.tmp` is ignored and removed by [`FileStore::open`].
//!
//! The file system is reached only through the [`Disk`] trait, so the same
//! code runs on a [`SimulatedDisk`](crate::disk::SimulatedDisk) that cuts the
//! power between any two of its operations; the power-cut campaign
//! (`sim-card/tests/power_cut.rs`) and the tests below check that every
//! state the medium may then hold opens as the old or the new state.
//!
//! # File layout (format version 1)
//!
//! All integers are little-endian.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "DMSCCARD"
//! 8       2     format version, u16 (1)
//! 10      4     record count N, u32
//! 14      ...   N records in strictly ascending key order, each:
//!                 key length u32, key bytes, value length u32, value bytes
//! end-4   4     CRC-32 (IEEE, as computed by crc32fast) of every byte before it, u32
//! ```
//!
//! An empty card state is therefore 18 bytes long.
//!
//! # Locking: one process per card
//!
//! While a `FileStore` is alive it holds an exclusive advisory lock
//! ([`File::try_lock`](std::fs::File::try_lock), `flock` on Unix) on the
//! open state file itself, so two processes (or two handles) cannot run the
//! same card at once. The lock belongs to the file (the inode), not to the
//! name, so a symbolic link or a hard link to the state file contends for
//! the same lock; the path is resolved once at open (symbolic links
//! followed) and every commit renames onto the resolved path.
//!
//! Every commit replaces the file, so the lock moves with it:
//!
//! 1. `<file>.tmp` is created, and locked at once, before anything is
//!    written to it.
//! 2. Just before the rename the store checks that the resolved path still
//!    names the file it holds (same device and inode, `lstat` against
//!    `fstat`) and that this file has exactly one name. Otherwise the commit
//!    is refused with [`StoreError::Replaced`]: nothing is written, and the
//!    committed state in memory is unchanged.
//! 3. The rename puts the new, already locked file in place; only after the
//!    directory fsync is the old file's lock released.
//!
//! At every moment the file at the path is therefore locked by the store. A
//! second opener opens the path, tries the lock without waiting (held:
//! [`StoreError::InUse`]), and after taking it checks that the path still
//! names the file it locked. If a commit replaced the file between its open
//! and its lock, it locked a file no longer current, and it starts again
//! (the new file is locked: [`StoreError::InUse`]). No opener ever holds a
//! lock together with a current view that another handle also holds.
//!
//! A state file with more than one name (hard link) is refused at open
//! ([`StoreError::Replaced`]): the first commit would leave the other name
//! holding the old state, a stale copy of the card.
//!
//! The identity checks use the device and inode numbers of Unix; elsewhere
//! only the lock itself applies. Builds before this scheme locked a separate
//! `<file>.lock`; such a file is now ignored, and can be deleted.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::disk::{Disk, FileId, OsDisk};
use crate::store::{
    Change, ChecksumCheck, IoOperation, Journal, LockConflict, OsError, PersistentMemory,
    RecordField, Records, RecordsFit, ReplacedHow, StateDefect, StoreError, TempFileStep,
};

/// The first eight bytes of every card state file.
pub const MAGIC: [u8; 8] = *b"DMSCCARD";
/// The file format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Magic, version and record count.
const HEADER_LEN: usize = 14;
/// The trailing CRC-32.
const CRC_LEN: usize = 4;
/// The size of an empty card state.
const MIN_FILE_LEN: usize = HEADER_LEN + CRC_LEN;
/// How often an opener starts again when the file it locked was replaced
/// between its open and its lock.
const LOCK_ATTEMPTS: usize = 3;

/// Whether the handle can still be used.
#[derive(Debug)]
enum Health {
    Ok,
    /// The disk lost power ([`SimulatedDisk`](crate::disk::SimulatedDisk)).
    PowerLost,
    /// A commit failed after the rename: memory and disk may disagree.
    Failed(StoreError),
}

/// Where a card state lives: the path as given (for messages), the path
/// with symbolic links resolved (where the store writes), its temporary
/// file and its directory.
#[derive(Debug)]
struct Location {
    path: PathBuf,
    real: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Location {
    fn new(path: &Path, real: PathBuf) -> Self {
        let dir = match real.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            path: path.to_path_buf(),
            tmp: sibling(&real, ".tmp"),
            dir,
            real,
        }
    }

    /// Locks the state file, starting again while it is replaced between
    /// the open and the lock (see the module documentation).
    fn acquire<D: Disk>(&self, disk: &mut D) -> Result<FileId, StoreError> {
        for _ in 0..LOCK_ATTEMPTS {
            let held = match disk.lock(&self.real) {
                Ok(held) => held,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(StoreError::InUse {
                        path: shown(&self.path),
                        conflict: LockConflict::Held,
                    })
                }
                Err(e) => return Err(read_error(&self.path, &e)),
            };
            match disk.identity(&self.real) {
                Ok(now) if now == held.id => return Ok(held.id),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&self.path, IoOperation::CheckLocked, &e)),
            }
        }
        Err(StoreError::InUse {
            path: shown(&self.path),
            conflict: LockConflict::ReplacedWhileLocking {
                attempts: LOCK_ATTEMPTS,
            },
        })
    }

    /// Checks that the path still names the held file `id`.
    fn check_current<D: Disk>(&self, disk: &mut D, id: FileId) -> Result<(), StoreError> {
        let replaced = |found: ReplacedHow| StoreError::Replaced {
            path: shown(&self.path),
            found,
        };
        let held = disk
            .held()
            .map_err(|e| io_error(&self.path, IoOperation::CheckLocked, &e))?;
        match disk.identity(&self.real) {
            Ok(now) if now == id && held.id == id => Ok(()),
            Ok(_) => Err(replaced(ReplacedHow::OtherFile {
                real: shown(&self.real),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(replaced(ReplacedHow::Gone {
                real: shown(&self.real),
            })),
            Err(e) => Err(io_error(&self.path, IoOperation::CheckState, &e)),
        }
    }
}

/// Refuses a held file with more than one name.
fn one_name<D: Disk>(disk: &mut D, path: &Path, running: bool) -> Result<(), StoreError> {
    let held = disk
        .held()
        .map_err(|e| io_error(path, IoOperation::CheckLocked, &e))?;
    if held.links <= 1 {
        return Ok(());
    }
    Err(StoreError::Replaced {
        path: shown(path),
        found: ReplacedHow::HardLinks {
            names: held.links,
            running,
        },
    })
}

/// Persistent memory kept in one state file, replaced atomically on every commit.
///
/// See the [module documentation](self) for the file layout, crash safety
/// and locking. `D` is the file system under it: the real one ([`OsDisk`]),
/// or a [`SimulatedDisk`](crate::disk::SimulatedDisk) for power-cut campaigns.
#[derive(Debug)]
pub struct FileStore<D: Disk = OsDisk> {
    /// Holds the exclusive lock on the state file until the store is dropped.
    disk: D,
    at: Location,
    /// The held (locked) state file, once there is one.
    held: Option<FileId>,
    committed: Records,
    journal: Journal,
    fsyncs: u64,
    commits: u64,
    health: Health,
}

impl FileStore {
    /// Creates a new, empty card state at `path` and opens it.
    ///
    /// Refuses an existing file. The empty state is written atomically
    /// (temporary file, fsync, rename, directory fsync), locked before it is
    /// renamed into place.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::create_on(OsDisk::default(), path)
    }

    /// Opens an existing card state at `path`, locking it and reading and
    /// verifying it at once.
    ///
    /// A missing or unreadable file gives [`StoreError::Io`]; a file that is
    /// not a valid card state (wrong magic, unsupported version, checksum
    /// mismatch, truncation, trailing bytes, inconsistent lengths) gives
    /// [`StoreError::Corrupt`]; a card state held by another handle or
    /// process gives [`StoreError::InUse`]; a file with more than one name
    /// gives [`StoreError::Replaced`]. Every message names the file. A
    /// leftover `<file>.tmp` from an interrupted commit is removed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_on(OsDisk::default(), path)
    }
}

impl<D: Disk> FileStore<D> {
    /// [`create`](FileStore::create) on `disk`.
    pub fn create_on(disk: D, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::create_with(disk, path.as_ref())
    }

    /// [`open`](FileStore::open) on `disk`.
    pub fn open_on(disk: D, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(disk, path.as_ref())
    }

    fn create_with(mut disk: D, path: &Path) -> Result<Self, StoreError> {
        match disk.exists(path) {
            Ok(false) => {}
            Ok(true) => {
                return Err(StoreError::Io {
                    path: Some(shown(path)),
                    operation: IoOperation::CreateOverExisting,
                    cause: None,
                })
            }
            Err(e) => return Err(io_error(path, IoOperation::CheckExists, &e)),
        }
        let real = disk
            .resolve(path)
            .map_err(|e| io_error(path, IoOperation::ResolveDirectory, &e))?;
        let mut store = Self::with(disk, Location::new(path, real));
        let image = Zeroizing::new(encode(&store.committed)?);
        store.persist(&image)?;
        Ok(store)
    }

    fn open_with(mut disk: D, path: &Path) -> Result<Self, StoreError> {
        let real = disk.resolve(path).map_err(|e| read_error(path, &e))?;
        let at = Location::new(path, real);
        let held = at.acquire(&mut disk)?;
        let mut store = Self::with(disk, at);
        store.held = Some(held);
        // Never read: a failed removal is harmless, the next commit removes it.
        let _ = store.disk.remove(&store.at.tmp);
        let data = Zeroizing::new(
            store
                .disk
                .read(&store.at.real)
                .map_err(|e| read_error(&store.at.path, &e))?,
        );
        store.committed = decode(&data).map_err(|defect| StoreError::Corrupt {
            path: Some(shown(&store.at.path)),
            defect,
        })?;
        one_name(&mut store.disk, &store.at.path, false)?;
        Ok(store)
    }

    fn with(disk: D, at: Location) -> Self {
        Self {
            disk,
            at,
            held: None,
            committed: Records::new(),
            journal: Journal::default(),
            fsyncs: 0,
            commits: 0,
            health: Health::Ok,
        }
    }

    /// The state file, as given to `create` or `open`.
    pub fn path(&self) -> &Path {
        &self.at.path
    }

    /// The file system under the store.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// The file system under the store, for fault injection.
    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    /// How many fsyncs this handle has issued (those of `create` included):
    /// two per commit, the temporary file's and the directory's.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// How many transactions this handle has committed.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    fn usable(&self) -> Result<(), StoreError> {
        match &self.health {
            Health::Ok => Ok(()),
            Health::PowerLost => Err(StoreError::PowerLost),
            Health::Failed(error) => Err(error.clone()),
        }
    }

    /// `error`, unless the disk lost power: the handle is then dead and
    /// every call returns [`StoreError::PowerLost`].
    fn unless_power_lost(&mut self, error: StoreError) -> StoreError {
        if self.disk.has_lost_power() {
            self.health = Health::PowerLost;
            StoreError::PowerLost
        } else {
            error
        }
    }

    fn commit_journal(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        let changes = self.journal.take()?;
        let mut next = self.committed.clone();
        Journal::apply(&mut next, changes);
        let image = Zeroizing::new(encode(&next)?);
        self.persist(&image)?;
        self.committed = next;
        self.commits += 1;
        Ok(())
    }

    /// Checks, just before the rename, that the path still names the held
    /// file and that it has one name (or, at `create`, that nothing appeared
    /// at the path meanwhile).
    fn check_before_rename(&mut self) -> Result<(), StoreError> {
        match self.held {
            Some(id) => {
                self.at.check_current(&mut self.disk, id)?;
                one_name(&mut self.disk, &self.at.path, true)
            }
            None => match self.disk.exists(&self.at.real) {
                Ok(false) => Ok(()),
                Ok(true) => Err(StoreError::Io {
                    path: Some(shown(&self.at.path)),
                    operation: IoOperation::AppearedDuringCreate,
                    cause: None,
                }),
                Err(e) => Err(io_error(&self.at.path, IoOperation::CheckExists, &e)),
            },
        }
    }

    /// Replaces the state file with `image`: write, fsync and lock
    /// `<file>.tmp`, check that the file is still ours, rename it over
    /// `<file>`, fsync the directory, then release the old file's lock.
    fn persist(&mut self, image: &[u8]) -> Result<(), StoreError> {
        let replaced = self
            .write_tmp(image)
            .and_then(|()| self.check_before_rename())
            .and_then(|()| {
                self.disk.rename(&self.at.tmp, &self.at.real).map_err(|e| {
                    let from = shown(&self.at.tmp);
                    io_error(&self.at.path, IoOperation::RenameOver { from }, &e)
                })
            });
        if let Err(e) = replaced {
            // Before the rename the old state is intact: remove the temporary
            // file, unless the power is gone (the next open removes it).
            let e = self.unless_power_lost(e);
            if e != StoreError::PowerLost {
                let _ = self.disk.remove(&self.at.tmp);
            }
            return Err(e);
        }
        let path = &self.at.path;
        let synced = self
            .disk
            .sync_dir(&self.at.dir)
            .map_err(|e| io_error(path, IoOperation::SyncAfterCommit, &e));
        // The new file, locked since its creation, is now the held one.
        let disk = &mut self.disk;
        let held = synced.and_then(|()| {
            disk.hold_new()
                .and_then(|()| disk.held())
                .map_err(|e| io_error(path, IoOperation::LockAfterCommit, &e))
        });
        match held {
            Ok(held) => {
                self.held = Some(held.id);
                self.fsyncs += 1;
                Ok(())
            }
            Err(error) => {
                // The new state is in place but may not be durable or locked:
                // make the caller reopen the file rather than guess.
                self.health = Health::Failed(error.clone());
                Err(self.unless_power_lost(error))
            }
        }
    }

    fn write_tmp(&mut self, image: &[u8]) -> Result<(), StoreError> {
        let (path, tmp) = (&self.at.path, &self.at.tmp);
        let fail = |step: TempFileStep, e: &io::Error| {
            let tmp = shown(tmp);
            io_error(path, IoOperation::TempFile { step, tmp }, e)
        };
        // A leftover temporary file (or anything planted in its place) is
        // removed, and the new one is created afresh with owner-only mode.
        match self.disk.remove(tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(TempFileStep::RemoveStale, &e)),
        }
        let disk = &mut self.disk;
        disk.create_new(tmp)
            .map_err(|e| fail(TempFileStep::CreateAndLock, &e))?;
        disk.write_all(tmp, image)
            .map_err(|e| fail(TempFileStep::Write, &e))?;
        disk.sync_file(tmp)
            .map_err(|e| fail(TempFileStep::Sync, &e))?;
        self.fsyncs += 1;
        Ok(())
    }
}

impl<D: Disk> PersistentMemory for FileStore<D> {
    fn load(&mut self) -> Result<Records, StoreError> {
        self.usable()?;
        Ok(self.committed.clone())
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.usable()?;
        self.journal.begin()
    }

    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.usable()?;
        if u32::try_from(key.len()).is_err() || u32::try_from(value.len()).is_err() {
            return Err(StoreError::Misuse("record key or value longer than 4 GiB"));
        }
        self.journal
            .stage(key, Change::Write(Zeroizing::new(value.to_vec())))
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.usable()?;
        self.journal.stage(key, Change::Remove)
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.commit_journal()
    }

    fn abort(&mut self) {
        self.journal.abort();
    }
}

/// The exclusive lock of an existing card state, taken without reading the
/// file (so a corrupt state can be locked too), for replacing the whole file
/// with another card (`dmsc sim init --force`).
#[derive(Debug)]
pub struct StateLock {
    disk: OsDisk,
    at: Location,
    held: FileId,
}

impl StateLock {
    /// Locks the card state at `path` as [`FileStore::open`] does:
    /// [`StoreError::InUse`] if another handle or process holds it.
    pub fn acquire(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let mut disk = OsDisk::default();
        let real = disk.resolve(path).map_err(|e| read_error(path, &e))?;
        let at = Location::new(path, real);
        let held = at.acquire(&mut disk)?;
        Ok(Self { disk, at, held })
    }

    /// The directory of the state file (symbolic links resolved), where a
    /// replacement must be prepared for the rename to be atomic.
    pub fn dir(&self) -> &Path {
        &self.at.dir
    }

    /// Renames `new` over the locked state file, after checking that the
    /// path still names it ([`StoreError::Replaced`] otherwise, and nothing
    /// is changed), makes the rename durable and releases the lock.
    pub fn replace_with(mut self, new: &Path) -> Result<(), StoreError> {
        self.at.check_current(&mut self.disk, self.held)?;
        self.disk.rename(new, &self.at.real).map_err(|e| {
            let from = shown(new);
            io_error(&self.at.path, IoOperation::RenameOver { from }, &e)
        })?;
        self.disk
            .sync_dir(&self.at.dir)
            .map_err(|e| io_error(&self.at.path, IoOperation::SyncDirectory, &e))
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// A path as error texts show it.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// `operation` on the card state at `path` failed with `e`.
fn io_error(path: &Path, operation: IoOperation, e: &io::Error) -> StoreError {
    StoreError::Io {
        path: Some(shown(path)),
        operation,
        cause: Some(OsError::from(e)),
    }
}

/// Reading the card state at `path` failed with `e`.
fn read_error(path: &Path, e: &io::Error) -> StoreError {
    let operation = if e.kind() == io::ErrorKind::NotFound {
        IoOperation::OpenMissing
    } else {
        IoOperation::Read
    };
    io_error(path, operation, e)
}

/// Serialises every record (see the module documentation for the layout).
fn encode(records: &Records) -> Result<Vec<u8>, StoreError> {
    const TOO_LONG: &str = "record key or value longer than 4 GiB";
    let count = u32::try_from(records.len())
        .map_err(|_| StoreError::Misuse("more than 4 G records in one card state"))?;
    let size = records.iter().fold(MIN_FILE_LEN, |n, (k, v)| {
        n.saturating_add(8)
            .saturating_add(k.len())
            .saturating_add(v.len())
    });
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for (key, value) in records {
        for field in [key, value] {
            let len = u32::try_from(field.len()).map_err(|_| StoreError::Misuse(TOO_LONG))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(field);
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads a little-endian `u16`/`u32` at `at`, if the bytes are there.
fn le_u16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Why the records section does not match the record count.
enum Shape {
    /// Record `record` needs `needed` bytes for its `field` but only `left` remain.
    Short {
        record: u32,
        field: RecordField,
        needed: u64,
        left: usize,
    },
    /// Record `record`'s key is not greater than the previous key.
    Unordered { record: u32, key: Vec<u8> },
}

/// Walks `count` records at the start of `body`, passing each to `visit`, and
/// returns how many bytes they take.
fn walk(
    body: &[u8],
    count: u32,
    mut visit: impl FnMut(u32, &[u8], &[u8]) -> Result<(), Shape>,
) -> Result<usize, Shape> {
    let mut at = 0usize;
    for record in 0..count {
        let field = |name: RecordField, at: &mut usize| -> Result<&[u8], Shape> {
            let left = body.len().saturating_sub(*at);
            let Some(len) = le_u32(body, *at) else {
                return Err(Shape::Short {
                    record,
                    field: name,
                    needed: 4,
                    left,
                });
            };
            let start = *at + 4;
            let bytes = start
                .checked_add(len as usize)
                .and_then(|end| body.get(start..end).map(|b| (b, end)));
            match bytes {
                Some((bytes, end)) => {
                    *at = end;
                    Ok(bytes)
                }
                None => Err(Shape::Short {
                    record,
                    field: name,
                    needed: 4 + u64::from(len),
                    left,
                }),
            }
        };
        let key = field(RecordField::Key, &mut at)?;
        let value = field(RecordField::Value, &mut at)?;
        visit(record, key, value)?;
    }
    Ok(at)
}

/// Parses and verifies a whole state file; the error describes the defect.
fn decode(data: &[u8]) -> Result<Records, StateDefect> {
    let len = data.len();
    if len == 0 {
        return Err(StateDefect::Empty);
    }
    let head = data.get(..MAGIC.len().min(len)).unwrap_or(data);
    if MAGIC.get(..head.len()) != Some(head) {
        return Err(StateDefect::WrongMagic {
            found: head.to_vec(),
            expected: MAGIC,
        });
    }
    let truncated = || StateDefect::Truncated {
        len,
        minimum: MIN_FILE_LEN,
    };
    let version = le_u16(data, MAGIC.len()).ok_or_else(truncated)?;
    let checksum = match len.checked_sub(CRC_LEN) {
        Some(body_end) if len >= MIN_FILE_LEN => {
            let stored = le_u32(data, body_end).ok_or_else(truncated)?;
            let computed = crc32fast::hash(data.get(..body_end).ok_or_else(truncated)?);
            Some((stored, computed))
        }
        _ => None,
    };
    if version != FORMAT_VERSION {
        return Err(StateDefect::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
            checksum: match checksum {
                Some((stored, computed)) if stored == computed => ChecksumCheck::Valid,
                Some(_) => ChecksumCheck::Invalid,
                None => ChecksumCheck::Absent,
            },
        });
    }
    let Some((stored, computed)) = checksum else {
        return Err(truncated());
    };
    let count = le_u32(data, MAGIC.len() + 2).ok_or_else(truncated)?;
    let rest = data.get(HEADER_LEN..).unwrap_or_default();
    if stored != computed {
        // Diagnose from the record lengths, taking the checksum bytes as data.
        let fit = match walk(rest, count, |_, _, _| Ok(())) {
            Ok(used) if used + CRC_LEN < rest.len() => RecordsFit::Excess {
                bytes: rest.len() - used - CRC_LEN,
            },
            Ok(used) if used + CRC_LEN == rest.len() => RecordsFit::Exact,
            _ => RecordsFit::Overrun { count, len },
        };
        return Err(StateDefect::ChecksumMismatch {
            stored,
            computed,
            fit,
        });
    }
    let body = rest
        .get(..rest.len().saturating_sub(CRC_LEN))
        .unwrap_or_default();
    let mut records = Records::new();
    let walked = walk(body, count, |record, key, value| {
        if records
            .last_key_value()
            .is_some_and(|(last, _)| key <= last.as_slice())
        {
            return Err(Shape::Unordered {
                record,
                key: key.to_vec(),
            });
        }
        records.insert(key.to_vec(), value.to_vec());
        Ok(())
    });
    match walked {
        Ok(used) if used == body.len() => Ok(records),
        Ok(used) => Err(StateDefect::TrailingBytes {
            bytes: body.len() - used,
            count,
        }),
        Err(Shape::Short {
            record,
            field,
            needed,
            left,
        }) => Err(StateDefect::InconsistentLengths {
            record,
            count,
            field,
            needed,
            left,
        }),
        Err(Shape::Unordered { record, key }) => Err(StateDefect::UnorderedKey { record, key }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{AfterCrash, SimulatedDisk};
    use crate::fault::FaultyStore;
    use std::fs;
    use tempfile::TempDir;

    fn dir() -> TempDir {
        tempfile::tempdir().unwrap()
    }

    fn records(pairs: &[(&[u8], &[u8])]) -> Records {
        pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// A store at `<dir>/card.state` committed with `pairs`.
    fn filled(dir: &TempDir, pairs: &[(&[u8], &[u8])]) -> (FileStore, PathBuf) {
        let path = dir.path().join("card.state");
        let mut store = FileStore::create(&path).unwrap();
        store.begin().unwrap();
        for (k, v) in pairs {
            store.write(k, v).unwrap();
        }
        store.commit().unwrap();
        (store, path)
    }

    const SMALL: &[(&[u8], &[u8])] = &[(b"meta", b"\x01\x02"), (b"obj/a", b"alpha"), (b"z", b"")];

    /// A state file with arbitrary header fields and body, and a valid checksum.
    fn image(magic: &[u8], version: u16, count: u32, body: &[u8]) -> Vec<u8> {
        let mut out = magic.to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = (key.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    /// Opens `path` holding `bytes` and returns the `Corrupt` defect.
    fn defect(path: &Path, bytes: &[u8]) -> StateDefect {
        fs::write(path, bytes).unwrap();
        match FileStore::open(path) {
            Err(StoreError::Corrupt {
                path: Some(named),
                defect,
            }) => {
                assert_eq!(named, path.display().to_string(), "{defect}");
                defect
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// Opens `path` holding `bytes` and returns the `Corrupt` message
    /// after its prefix: the file and the defect.
    fn corrupt(path: &Path, bytes: &[u8]) -> String {
        format!("{}: {}", path.display(), defect(path, bytes))
    }

    /// The text of an `Io` error after its prefix, checking that it names `path`.
    fn io_text(path: &Path, e: &StoreError) -> String {
        assert!(matches!(e, StoreError::Io { .. }), "{e:?}");
        assert_eq!(e.path(), Some(path.display().to_string().as_str()));
        let text = e.to_string();
        match text.strip_prefix("card state I/O error: ") {
            Some(rest) => rest.to_string(),
            None => panic!("{text}"),
        }
    }

    #[test]
    fn layout_of_an_empty_and_a_small_state() {
        let d = dir();
        let path = d.path().join("card.state");
        drop(FileStore::create(&path).unwrap());
        assert_eq!(fs::read(&path).unwrap(), image(b"DMSCCARD", 1, 0, b""));
        assert_eq!(fs::read(&path).unwrap().len(), 18);

        let d = dir();
        let (_store, path) = filled(&d, SMALL);
        let body: Vec<u8> = SMALL.iter().flat_map(|(k, v)| record(k, v)).collect();
        assert_eq!(fs::read(&path).unwrap(), image(b"DMSCCARD", 1, 3, &body));
    }

    #[test]
    fn round_trip_of_many_records_with_empty_and_large_values() {
        let d = dir();
        let path = d.path().join("card.state");
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 255) as u8).collect();
        let mut expected = Records::new();
        expected.insert(Vec::new(), b"empty key".to_vec());
        expected.insert(b"empty".to_vec(), Vec::new());
        expected.insert(b"big".to_vec(), big.clone());
        expected.insert(vec![0xFF; 300], vec![0; 3]);
        for i in 0..500u32 {
            expected.insert(
                format!("obj/{i:04}").into_bytes(),
                i.to_be_bytes().repeat(i as usize % 9),
            );
        }

        let mut store = FileStore::create(&path).unwrap();
        store.begin().unwrap();
        for (k, v) in &expected {
            store.write(k, v).unwrap();
        }
        store.write(b"gone", b"x").unwrap();
        store.remove(b"gone").unwrap();
        store.commit().unwrap();
        assert_eq!(store.load().unwrap(), expected);
        drop(store);

        let mut store = FileStore::open(&path).unwrap();
        assert_eq!(store.path(), path.as_path());
        assert_eq!(store.load().unwrap(), expected);
        assert_eq!(store.load().unwrap()[&b"big"[..]], big);

        // A second transaction on the reopened store.
        store.begin().unwrap();
        store.remove(b"big").unwrap();
        store.write(b"empty", b"now full").unwrap();
        store.commit().unwrap();
        drop(store);
        expected.remove(&b"big"[..]);
        expected.insert(b"empty".to_vec(), b"now full".to_vec());
        assert_eq!(FileStore::open(&path).unwrap().load().unwrap(), expected);
    }

    #[test]
    fn nothing_is_visible_or_written_before_commit_and_abort_leaves_the_file_untouched() {
        let d = dir();
        let (mut store, path) = filled(&d, SMALL);
        let before = fs::read(&path).unwrap();
        let fsyncs = store.fsyncs();

        store.begin().unwrap();
        store.write(b"meta", b"changed").unwrap();
        store.remove(b"obj/a").unwrap();
        store.write(b"new", b"record").unwrap();
        assert_eq!(store.load().unwrap(), records(SMALL));
        assert_eq!(fs::read(&path).unwrap(), before);
        store.abort();

        assert_eq!(fs::read(&path).unwrap(), before);
        assert!(!sibling(&path, ".tmp").exists());
        assert_eq!(store.fsyncs(), fsyncs);
        assert_eq!(store.load().unwrap(), records(SMALL));
        drop(store);
        assert_eq!(
            FileStore::open(&path).unwrap().load().unwrap(),
            records(SMALL)
        );
    }

    #[test]
    fn a_commit_takes_at_most_two_fsyncs() {
        let d = dir();
        let path = d.path().join("card.state");
        let mut store = FileStore::create(&path).unwrap();
        let expected_per_commit = if cfg!(unix) { 2 } else { 1 };
        assert_eq!(store.fsyncs(), expected_per_commit);
        for i in 0..5u8 {
            let before = store.fsyncs();
            store.begin().unwrap();
            store.write(&[i], &[i; 100]).unwrap();
            store.write(b"counter", &[i]).unwrap();
            store.commit().unwrap();
            assert!(store.fsyncs() - before <= 2);
            assert_eq!(store.fsyncs() - before, expected_per_commit);
        }
        assert_eq!(store.commits(), 5);
        assert!(!sibling(&path, ".tmp").exists());
    }

    #[test]
    fn misuse_is_reported_and_writes_nothing() {
        let d = dir();
        let (mut store, path) = filled(&d, SMALL);
        let before = fs::read(&path).unwrap();
        assert!(matches!(
            store.write(b"k", b"v"),
            Err(StoreError::Misuse(_))
        ));
        assert!(matches!(store.remove(b"k"), Err(StoreError::Misuse(_))));
        assert!(matches!(store.commit(), Err(StoreError::Misuse(_))));
        store.begin().unwrap();
        assert!(matches!(store.begin(), Err(StoreError::Misuse(_))));
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let d = dir();
        let path = d.path().join("card.state");
        fs::write(&path, b"precious").unwrap();
        let err = FileStore::create(&path).unwrap_err();
        assert_eq!(
            err,
            StoreError::Io {
                path: Some(path.display().to_string()),
                operation: IoOperation::CreateOverExisting,
                cause: None,
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "card state I/O error: {}: already exists; refusing to overwrite an existing \
                 card state",
                path.display()
            )
        );
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn create_in_a_missing_directory_names_the_path() {
        let d = dir();
        let path = d.path().join("no/such/dir/card.state");
        match FileStore::create(&path) {
            Err(e) => {
                let msg = io_text(&path, &e);
                assert!(msg.starts_with(&path.display().to_string()), "{msg}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_file_is_an_io_error_and_leaves_no_lock_file() {
        let d = dir();
        let path = d.path().join("card.state");
        let err = FileStore::open(&path).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::Io {
                    operation: IoOperation::OpenMissing,
                    cause: Some(cause),
                    ..
                } if cause.kind() == io::ErrorKind::NotFound
            ),
            "{err:?}"
        );
        assert_eq!(
            io_text(&path, &err),
            format!("{}: card state file does not exist", path.display())
        );
        assert!(!sibling(&path, ".lock").exists());
    }

    #[test]
    fn a_directory_is_an_io_error() {
        let d = dir();
        let path = d.path().join("card.state");
        fs::create_dir(&path).unwrap();
        match FileStore::open(&path) {
            Err(e) => {
                let msg = io_text(&path, &e);
                assert!(
                    msg.starts_with(&format!("{}: cannot read card state: ", path.display())),
                    "{msg}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_handle_is_refused_while_the_first_is_open() {
        let d = dir();
        let (store, path) = filled(&d, SMALL);
        let in_use = StoreError::InUse {
            path: path.display().to_string(),
            conflict: LockConflict::Held,
        };
        assert_eq!(FileStore::open(&path).unwrap_err(), in_use);
        assert_eq!(StateLock::acquire(&path).unwrap_err(), in_use);
        assert_eq!(
            in_use.to_string(),
            format!(
                "card state in use: {}: another process holds this card state (for example \
                 `dmsc sim serve`); stop it first",
                path.display()
            )
        );
        drop(store);
        let mut store = FileStore::open(&path).unwrap();
        // Still locked after a commit replaced the state file's inode.
        store.begin().unwrap();
        store.write(b"x", b"y").unwrap();
        store.commit().unwrap();
        assert!(matches!(
            FileStore::open(&path),
            Err(StoreError::InUse { .. })
        ));
        assert!(matches!(
            StateLock::acquire(&path),
            Err(StoreError::InUse { .. })
        ));
    }

    /// A store on a simulated disk holding `SMALL`, and a transaction ready to commit.
    fn simulated_with_a_transaction() -> FileStore<SimulatedDisk> {
        let mut store = FileStore::create_on(SimulatedDisk::new(), "card.state").unwrap();
        store.begin().unwrap();
        for (k, v) in SMALL {
            store.write(k, v).unwrap();
        }
        store.commit().unwrap();
        store.begin().unwrap();
        store.write(b"meta", b"changed").unwrap();
        store
    }

    #[test]
    fn a_commit_after_the_state_file_was_replaced_is_refused_on_a_simulated_disk() {
        let state = Path::new("card.state");
        let other = Path::new("other.state");
        // Renamed away.
        let mut store = simulated_with_a_transaction();
        store.disk_mut().rename(state, other).unwrap();
        match store.commit() {
            Err(
                e @ StoreError::Replaced {
                    found: ReplacedHow::Gone { .. },
                    ..
                },
            ) => assert!(e.to_string().contains("no longer exists"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.load().unwrap(), records(SMALL));
        assert!(!store.disk_mut().exists(&sibling(state, ".tmp")).unwrap());
        // Replaced by another file.
        let mut store = simulated_with_a_transaction();
        let disk = store.disk_mut();
        disk.create_new(other).unwrap();
        disk.write_all(other, b"planted").unwrap();
        disk.sync_file(other).unwrap();
        disk.rename(other, state).unwrap();
        match store.commit() {
            Err(
                e @ StoreError::Replaced {
                    found: ReplacedHow::OtherFile { .. },
                    ..
                },
            ) => assert!(e.to_string().contains("(it was replaced)"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.load().unwrap(), records(SMALL));
        assert_eq!(store.disk_mut().read(state).unwrap(), b"planted");
        // The same commit on an untouched disk goes through.
        let mut store = simulated_with_a_transaction();
        store.commit().unwrap();
    }

    #[test]
    fn a_commit_locks_the_new_file_before_releasing_the_old_one_on_a_simulated_disk() {
        let state = Path::new("card.state");
        let mut store = simulated_with_a_transaction();
        let old = store.disk_mut().identity(state).unwrap();
        store.commit().unwrap();
        let disk = store.disk_mut();
        let new = disk.identity(state).unwrap();
        assert_ne!(old, new, "a commit replaces the file");
        assert_eq!(disk.held().unwrap().id, new);
        assert_eq!(
            disk.lock(state).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn defects_are_typed_and_read_as_before() {
        let d = dir();
        let path = d.path().join("card.state");
        let shown = path.display().to_string();
        let open_err = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            FileStore::open(&path).unwrap_err()
        };

        let e = open_err(b"");
        assert!(
            matches!(&e, StoreError::Corrupt { path: Some(p), defect: StateDefect::Empty } if *p == shown),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("card state is corrupt: {shown}: file is empty (0 bytes); expected a dmsc card state")
        );

        let e = open_err(b"DMSCCARD\x01");
        assert!(
            matches!(
                &e,
                StoreError::Corrupt {
                    defect: StateDefect::Truncated {
                        len: 9,
                        minimum: 18
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "card state is corrupt: {shown}: truncated: file is 9 bytes, shorter than the \
                 18-byte minimum of an empty card state"
            )
        );

        // Three bytes appended: the file's last four are taken as the checksum.
        let mut bad = image(b"DMSCCARD", 1, 0, b"");
        bad.extend_from_slice(b"xyz");
        let n = bad.len();
        let stored = u32::from_le_bytes(bad[n - 4..].try_into().unwrap());
        let computed = crc32fast::hash(&bad[..n - 4]);
        let e = open_err(&bad);
        assert_eq!(
            e,
            StoreError::Corrupt {
                path: Some(shown.clone()),
                defect: StateDefect::ChecksumMismatch {
                    stored,
                    computed,
                    fit: RecordsFit::Excess { bytes: 3 },
                },
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "card state is corrupt: {shown}: checksum mismatch (stored {stored:08X}, \
                 computed {computed:08X}); 3 unexpected bytes follow the declared records \
                 and checksum"
            )
        );

        // A long key is quoted cut to 48 bytes.
        let long = [b'k'; 60];
        let mut body = record(&long, b"1");
        body.extend(record(&long, b"2"));
        match defect(&path, &image(b"DMSCCARD", 1, 2, &body)) {
            found @ StateDefect::UnorderedKey { record: 1, .. } => assert_eq!(
                found.to_string(),
                format!(
                    "record 1: key \"{}\"... is not greater than the previous key \
                     (duplicate or out of order)",
                    "k".repeat(48)
                )
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_magic() {
        let d = dir();
        let path = d.path().join("card.state");
        let msg = corrupt(&path, b"hello world, this is not a card");
        assert_eq!(
            msg,
            format!(
                "{}: not a dmsc card state: wrong magic 68 65 6C 6C 6F 20 77 6F \
                 (expected 44 4D 53 43 43 41 52 44, \"DMSCCARD\")",
                path.display()
            )
        );
        let msg = corrupt(&path, &image(b"DMSCCARX", 1, 0, b""));
        assert!(msg.contains("wrong magic"), "{msg}");
        let msg = corrupt(&path, b"XY");
        assert!(msg.contains("wrong magic 58 59 "), "{msg}");
    }

    #[test]
    fn future_version() {
        let d = dir();
        let path = d.path().join("card.state");
        let msg = corrupt(&path, &image(b"DMSCCARD", 2, 0, b""));
        assert_eq!(
            msg,
            format!(
                "{}: unsupported format version 2 (this build reads version 1); \
                 it was probably written by a newer dmsc",
                path.display()
            )
        );
        // A future format may be laid out differently: the version wins over the rest.
        let mut future = image(b"DMSCCARD", 7, 1, b"whatever");
        future.extend_from_slice(b"more");
        let msg = corrupt(&path, &future);
        assert!(msg.contains("unsupported format version 7 ("), "{msg}");
        let msg = corrupt(&path, &image(b"DMSCCARD", 0, 0, b""));
        assert!(msg.contains("unsupported format version 0 ("), "{msg}");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let d = dir();
        let (store, path) = filled(&d, SMALL);
        drop(store);
        let good = fs::read(&path).unwrap();
        for at in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut bad = good.clone();
                bad[at] ^= mask;
                let msg = corrupt(&path, &bad);
                let expected = match at {
                    0..=7 => "wrong magic",
                    8..=9 => "the checksum does not match either",
                    _ => "checksum mismatch (stored ",
                };
                assert!(msg.contains(expected), "byte {at} ^ {mask:02X}: {msg}");
            }
        }
    }

    #[test]
    fn checksum_message_gives_both_values() {
        let d = dir();
        let path = d.path().join("card.state");
        let mut bad = image(b"DMSCCARD", 1, 1, &record(b"k", b"v"));
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        let computed = crc32fast::hash(&bad[..n - 4]);
        assert_eq!(
            corrupt(&path, &bad),
            format!(
                "{}: checksum mismatch (stored 1A2B3C4D, computed {computed:08X})",
                path.display()
            )
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let d = dir();
        let (store, path) = filled(&d, SMALL);
        drop(store);
        let good = fs::read(&path).unwrap();
        for cut in 0..good.len() {
            let msg = corrupt(&path, &good[..cut]);
            let expected = match cut {
                0 => "file is empty (0 bytes)",
                1..=17 => "truncated: file is",
                _ => "so it is probably truncated (or a length field is damaged)",
            };
            assert!(msg.contains(expected), "cut at {cut}: {msg}");
        }
    }

    #[test]
    fn appended_bytes_are_detected() {
        let d = dir();
        let (store, path) = filled(&d, SMALL);
        drop(store);
        let mut bad = fs::read(&path).unwrap();
        bad.extend_from_slice(b"garbage!");
        let msg = corrupt(&path, &bad);
        assert!(msg.contains("checksum mismatch"), "{msg}");
        assert!(
            msg.contains("8 unexpected bytes follow the declared records"),
            "{msg}"
        );
    }

    #[test]
    fn trailing_bytes_under_a_valid_checksum() {
        let d = dir();
        let path = d.path().join("card.state");
        let mut body = record(b"a", b"1");
        body.extend_from_slice(b"xyz");
        assert_eq!(
            corrupt(&path, &image(b"DMSCCARD", 1, 1, &body)),
            format!(
                "{}: 3 trailing bytes after the last of the 1 records the header declares",
                path.display()
            )
        );
    }

    #[test]
    fn inconsistent_lengths_under_a_valid_checksum() {
        let d = dir();
        let path = d.path().join("card.state");
        // The record count says 2, only one record follows.
        let msg = corrupt(&path, &image(b"DMSCCARD", 1, 2, &record(b"a", b"1")));
        assert_eq!(
            msg,
            format!(
                "{}: inconsistent lengths: record 1 of 2 needs 4 bytes for its key \
                 (length field included) but only 0 bytes remain before the checksum",
                path.display()
            )
        );
        // A value length past the end.
        let mut body = record(b"a", b"1");
        body[5..9].copy_from_slice(&1000u32.to_le_bytes());
        let msg = corrupt(&path, &image(b"DMSCCARD", 1, 1, &body));
        assert!(
            msg.contains("record 0 of 1 needs 1004 bytes for its value"),
            "{msg}"
        );
        // A key length of u32::MAX.
        let body = [0xFF, 0xFF, 0xFF, 0xFF, 1, 2];
        let msg = corrupt(&path, &image(b"DMSCCARD", 1, 1, &body));
        assert!(msg.contains("needs 4294967299 bytes for its key"), "{msg}");
        // A huge record count over a tiny body.
        let msg = corrupt(&path, &image(b"DMSCCARD", 1, u32::MAX, b""));
        assert!(
            msg.contains("record 0 of 4294967295 needs 4 bytes"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_or_unordered_keys_under_a_valid_checksum() {
        let d = dir();
        let path = d.path().join("card.state");
        let mut body = record(b"b", b"1");
        body.extend(record(b"a", b"2"));
        let msg = corrupt(&path, &image(b"DMSCCARD", 1, 2, &body));
        assert_eq!(
            msg,
            format!(
                "{}: record 1: key \"a\" is not greater than the previous key \
                 (duplicate or out of order)",
                path.display()
            )
        );
        let mut body = record(b"a", b"1");
        body.extend(record(b"a", b"2"));
        let msg = corrupt(&path, &image(b"DMSCCARD", 1, 2, &body));
        assert!(msg.contains("record 1: key \"a\""), "{msg}");
    }

    #[test]
    fn a_leftover_tmp_file_is_ignored_and_removed() {
        let d = dir();
        let (store, path) = filled(&d, SMALL);
        drop(store);
        let tmp = sibling(&path, ".tmp");
        fs::write(&tmp, b"half-written garbage").unwrap();
        let mut store = FileStore::open(&path).unwrap();
        assert!(!tmp.exists());
        assert_eq!(store.load().unwrap(), records(SMALL));
    }

    /// After every cut of a commit of `NEW` over `SMALL` on a simulated disk,
    /// each state the medium may hold reopens as exactly the old or the new
    /// state; returns how many (cut, medium state) pairs gave each.
    fn crash_every_operation_of_a_commit() -> (usize, usize) {
        const NEW: &[(&[u8], &[u8])] = &[(b"meta", b"\x03"), (b"obj/b", b"beta")];
        let path = Path::new("card.state");
        let old = records(SMALL);
        let mut new = records(SMALL);
        new.remove(&b"obj/a"[..]);
        new.extend(records(NEW));
        let commit = |store: &mut FileStore<SimulatedDisk>| {
            store.begin()?;
            store.remove(b"obj/a")?;
            for (k, v) in NEW {
                store.write(k, v)?;
            }
            store.commit()
        };
        let prepared = || {
            let mut store = FileStore::create_on(SimulatedDisk::new(), path).unwrap();
            store.begin().unwrap();
            for (k, v) in SMALL {
                store.write(k, v).unwrap();
            }
            store.commit().unwrap();
            store
        };
        // The operations of one commit.
        let mut store = prepared();
        let before = store.disk().ops();
        commit(&mut store).unwrap();
        let ops = store.disk().ops() - before;
        assert_eq!(
            ops, 5,
            "remove-less commit: create, write, sync, rename, sync dir"
        );

        let (mut olds, mut news) = (0, 0);
        for cut in 0..ops {
            let mut store = prepared();
            store.disk.cut_after(Some(cut));
            assert_eq!(commit(&mut store), Err(StoreError::PowerLost), "cut {cut}");
            // The handle is dead.
            assert_eq!(store.load(), Err(StoreError::PowerLost));
            assert_eq!(store.begin(), Err(StoreError::PowerLost));
            for what in AfterCrash::ALL {
                let disk = store.disk().after_crash(what);
                let mut reopened = FileStore::open_on(disk, path)
                    .unwrap_or_else(|e| panic!("cut {cut}, {what:?}: {e}"));
                assert!(!reopened.disk.exists(&sibling(path, ".tmp")).unwrap());
                let state = reopened.load().unwrap();
                if state == old {
                    olds += 1;
                } else if state == new {
                    news += 1;
                } else {
                    panic!("cut {cut}, {what:?}: neither the old nor the new state");
                }
                // And the card works on.
                reopened.begin().unwrap();
                reopened.write(b"after", b"crash").unwrap();
                reopened.commit().unwrap();
            }
        }
        (olds, news)
    }

    #[test]
    fn a_crash_inside_a_commit_leaves_exactly_the_old_or_the_new_state() {
        let (olds, news) = crash_every_operation_of_a_commit();
        // Cut after the rename (before the directory sync): the directory may
        // or may not have reached the medium; both states are seen.
        assert_eq!((olds, news), (13, 2));
    }

    #[test]
    fn faulty_store_over_a_file_store_recovers_the_last_commit() {
        fn scenario(store: &mut impl PersistentMemory) -> Result<(), StoreError> {
            for i in 0..4u8 {
                store.begin()?;
                store.write(b"counter", &[i])?;
                store.write(&[b'k', i], &[i; 10])?;
                if i > 0 {
                    store.remove(&[b'k', i - 1])?;
                }
                store.commit()?;
            }
            Ok(())
        }
        let d = dir();
        let path = d.path().join("count.state");
        let mut counting = FaultyStore::new(FileStore::create(&path).unwrap(), None);
        scenario(&mut counting).unwrap();
        let total = counting.writes();
        assert_eq!(total, 15);
        let final_state = counting.into_inner().load().unwrap();

        for n in 1..=total {
            let d = dir();
            let path = d.path().join("card.state");
            let mut store = FaultyStore::new(FileStore::create(&path).unwrap(), Some(n));
            assert_eq!(scenario(&mut store), Err(StoreError::PowerLost));
            drop(store);
            let state = FileStore::open(&path).unwrap().load().unwrap();
            // The number of commits that took effect: writes 3, 7, 11 and 15 are commits.
            let done = match n {
                1..=2 => None,
                _ => Some(((n - 3) / 4) as u8),
            };
            let expected: Records = match done {
                None => Records::new(),
                Some(i) => records(&[(b"counter", &[i]), (&[b'k', i], &[i; 10])]),
            };
            assert_eq!(state, expected, "cut {n}");
        }
        assert_eq!(
            final_state,
            records(&[(b"counter", &[3]), (b"k\x03", &[3; 10])])
        );
    }
}
