//! The file-system operations a [`FileStore`](crate::file_store::FileStore)
//! is made of, on the real file system ([`OsDisk`]) or on a simulated disk
//! that loses power between any two of them ([`SimulatedDisk`]).
//!
//! A commit of the file store is exactly this sequence of mutating [`Disk`]
//! calls: `remove(<file>.tmp)`, `create_new(<file>.tmp)`, `write_all`,
//! `sync_file`, `rename(<file>.tmp, <file>)`, `sync_dir`, with the checks of
//! the single-process lock between them (`held`, `identity`) and
//! `hold_new` at the end. Locks live in the process, not on the medium: the
//! simulated disk models them without counting them as operations. The simulated disk
//! keeps apart what a process sees (the page cache) from what is on the
//! medium (what was synced), so a power cut after any of those calls can be
//! replayed, and every state the medium may be found in afterwards
//! ([`AfterCrash`]) can be opened again.

use std::collections::BTreeMap;
use std::fs::TryLockError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which file a name refers to: device and inode number (Unix).
///
/// Elsewhere every file has the same identity, so the checks that compare
/// identities never fail there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The device holding the file.
    pub dev: u64,
    /// The file's inode number on that device.
    pub ino: u64,
}

/// What the holder of a lock knows of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldFile {
    /// Which file it is.
    pub id: FileId,
    /// How many names (hard links) the file has.
    pub links: u64,
}

/// The file-system operations of a [`FileStore`](crate::file_store::FileStore).
///
/// Errors are `io::Error`s with the usual kinds (`NotFound` for a missing
/// file, `AlreadyExists` for `create_new` over an existing one, `WouldBlock`
/// for a lock held elsewhere).
///
/// A disk holds at most one *held* file: the state file, opened and locked
/// exclusively (an advisory lock on the open file, [`File::try_lock`]) until
/// another file is held or the disk is dropped. The file made by
/// [`create_new`](Disk::create_new) is locked too, from its creation, so a
/// new state is locked before it is renamed into place.
pub trait Disk {
    /// `path` with every symbolic link resolved (an absolute path); for a
    /// path that does not exist yet, its directory resolved and its file name.
    fn resolve(&mut self, path: &Path) -> io::Result<PathBuf>;
    /// Opens the existing file at `path` and locks it exclusively without
    /// waiting (`WouldBlock` if it is locked elsewhere); it becomes the held
    /// file, and the file held before is released.
    fn lock(&mut self, path: &Path) -> io::Result<HeldFile>;
    /// The held file as it is now (its link count may have changed).
    fn held(&mut self) -> io::Result<HeldFile>;
    /// Which file the name `path` itself refers to (a symbolic link is not
    /// followed), or `NotFound`.
    fn identity(&mut self, path: &Path) -> io::Result<FileId>;
    /// The file opened (and locked) by [`create_new`](Disk::create_new)
    /// becomes the held file; the file held before is released.
    fn hold_new(&mut self) -> io::Result<()>;
    /// Whether anything (file, directory, link) exists at `path`.
    fn exists(&mut self, path: &Path) -> io::Result<bool>;
    /// The whole contents of the file at `path`.
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>>;
    /// Removes the file at `path`.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Creates an empty file at `path`, which must not exist, readable and
    /// writable by its owner only, opens it for writing and locks it
    /// exclusively (it stays open and locked until it is removed, another
    /// file is created, or [`hold_new`](Disk::hold_new) makes it the held file).
    fn create_new(&mut self, path: &Path) -> io::Result<()>;
    /// Appends `data` to the file opened by [`create_new`](Disk::create_new).
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Makes the contents of the open file durable (fsync).
    fn sync_file(&mut self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of directory `dir` durable (fsync of the directory).
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Whether the power was lost (every call then fails).
    fn has_lost_power(&self) -> bool {
        false
    }
}

/// The real file system.
#[derive(Debug, Default)]
pub struct OsDisk {
    /// The file made by `create_new`, and its name, until it is held or removed.
    open: Option<(PathBuf, File)>,
    /// The locked state file.
    held: Option<File>,
}

impl OsDisk {
    fn open_file(&mut self, path: &Path) -> io::Result<&mut File> {
        match &mut self.open {
            Some((name, file)) if name == path => Ok(file),
            _ => Err(not_open(path)),
        }
    }
}

fn not_open(path: &Path) -> io::Error {
    io::Error::other(format!("{} is not open for writing", path.display()))
}

/// Locks `file` exclusively without waiting.
fn try_lock(file: &File) -> io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(unix)]
fn file_id(meta: &fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

#[cfg(not(unix))]
fn file_id(_meta: &fs::Metadata) -> FileId {
    FileId { dev: 0, ino: 0 }
}

#[cfg(unix)]
fn links(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(meta)
}

#[cfg(not(unix))]
fn links(_meta: &fs::Metadata) -> u64 {
    1
}

fn held_file(file: &File) -> io::Result<HeldFile> {
    let meta = file.metadata()?;
    Ok(HeldFile {
        id: file_id(&meta),
        links: links(&meta),
    })
}

fn nothing_held() -> io::Error {
    io::Error::other("no card state file is held")
}

impl Disk for OsDisk {
    fn resolve(&mut self, path: &Path) -> io::Result<PathBuf> {
        match fs::symlink_metadata(path) {
            Ok(_) => fs::canonicalize(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let name = path.file_name().ok_or(e)?;
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                Ok(fs::canonicalize(dir)?.join(name))
            }
            Err(e) => Err(e),
        }
    }
    fn lock(&mut self, path: &Path) -> io::Result<HeldFile> {
        let file = File::open(path)?;
        try_lock(&file)?;
        let held = held_file(&file)?;
        self.held = Some(file);
        Ok(held)
    }
    fn held(&mut self) -> io::Result<HeldFile> {
        held_file(self.held.as_ref().ok_or_else(nothing_held)?)
    }
    fn identity(&mut self, path: &Path) -> io::Result<FileId> {
        Ok(file_id(&fs::symlink_metadata(path)?))
    }
    fn hold_new(&mut self) -> io::Result<()> {
        let (_, file) = self
            .open
            .take()
            .ok_or_else(|| io::Error::other("no new card state file is open"))?;
        self.held = Some(file);
        Ok(())
    }
    fn exists(&mut self, path: &Path) -> io::Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        if self.open.as_ref().is_some_and(|(name, _)| name == path) {
            self.open = None;
        }
        fs::remove_file(path)
    }
    fn create_new(&mut self, path: &Path) -> io::Result<()> {
        self.open = None;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        // The state holds PINs and keys in clear, like a chip's EEPROM: owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        try_lock(&file)?;
        self.open = Some((path.to_path_buf(), file));
        Ok(())
    }
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.open_file(path)?.write_all(data)
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.open_file(path)?.sync_all()
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    #[cfg(unix)]
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    /// Directories cannot be opened for syncing here; the rename is still atomic.
    #[cfg(not(unix))]
    fn sync_dir(&mut self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// What a [`SimulatedDisk`] holds after a power cut: the medium may have
/// received any part of what the page cache held. Crash-safe code must
/// recover from each of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Only what was synced: file contents at their last `sync_file`, the
    /// directory as at its last `sync_dir`.
    SyncedOnly,
    /// The directory as the process last saw it (renames, creations and
    /// removals reached the medium, as a metadata journal may commit them),
    /// but file contents only as synced.
    DirectoryReached,
    /// Everything the process wrote reached the medium, a torn last write
    /// included.
    EverythingReached,
}

impl AfterCrash {
    /// Every state, from the most pessimistic.
    pub const ALL: [AfterCrash; 3] = [
        AfterCrash::SyncedOnly,
        AfterCrash::DirectoryReached,
        AfterCrash::EverythingReached,
    ];
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// What a process reads.
    cached: Vec<u8>,
    /// What is on the medium.
    synced: Vec<u8>,
}

/// A disk in RAM with one directory and a page cache, which loses power
/// after a chosen number of mutating operations.
///
/// Every successful `remove`, `create_new`, `write_all`, `sync_file`,
/// `rename` and `sync_dir` is one operation; `exists` and `read` are not
/// counted. With a cut set ([`cut_after`](Self::cut_after)), the operation
/// after the last allowed one fails (a `write_all` leaves half its bytes in
/// the cache: a torn write), and so does every later call;
/// [`has_lost_power`](Disk::has_lost_power) is then true.
/// [`after_crash`](Self::after_crash) gives the disk as found at the next
/// power-up. Paths are compared as given: all files live in one directory,
/// `sync_dir` syncs it whatever its argument, and `resolve` returns its
/// argument. A file's identity is its inode's index; the held file and the
/// file opened by `create_new` count as locked, and the lock calls are not
/// counted as operations (locks are not on the medium) but fail once the
/// power is lost.
#[derive(Debug, Clone, Default)]
pub struct SimulatedDisk {
    inodes: Vec<Inode>,
    /// Names as a process sees them.
    names: BTreeMap<PathBuf, usize>,
    /// Names as on the medium.
    synced_names: BTreeMap<PathBuf, usize>,
    /// The inode opened by the last `create_new`, until it is held or removed.
    open: Option<usize>,
    /// The locked state file's inode.
    held: Option<usize>,
    ops: u64,
    cut_at: Option<u64>,
    lost: bool,
}

impl SimulatedDisk {
    /// An empty disk that never loses power.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many mutating operations have taken effect.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Cuts the power after `more` further operations (`Some(0)`: the next
    /// one fails); `None` removes the cut.
    pub fn cut_after(&mut self, more: Option<u64>) {
        self.cut_at = more.map(|n| self.ops.saturating_add(n));
    }

    /// The disk as found at the next power-up, holding `what` of the cache.
    /// The returned disk is powered, never cuts, and has all it holds on its
    /// medium.
    pub fn after_crash(&self, what: AfterCrash) -> SimulatedDisk {
        let names = match what {
            AfterCrash::SyncedOnly => &self.synced_names,
            AfterCrash::DirectoryReached | AfterCrash::EverythingReached => &self.names,
        };
        let mut disk = SimulatedDisk::new();
        for (name, &inode) in names {
            let Some(inode) = self.inodes.get(inode) else {
                continue;
            };
            let data = if what == AfterCrash::EverythingReached {
                inode.cached.clone()
            } else {
                inode.synced.clone()
            };
            disk.names.insert(name.clone(), disk.inodes.len());
            disk.inodes.push(Inode {
                cached: data.clone(),
                synced: data,
            });
        }
        disk.synced_names = disk.names.clone();
        disk
    }

    /// Counts one operation, or fails it if the power is (now) cut.
    fn operation(&mut self) -> io::Result<()> {
        if self.lost || self.cut_at == Some(self.ops) {
            self.lost = true;
            return Err(io::Error::other("simulated power loss"));
        }
        self.ops += 1;
        Ok(())
    }

    fn inode_of(&self, path: &Path) -> io::Result<usize> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// Fails once the power is lost (for the calls that are not operations).
    fn powered(&self) -> io::Result<()> {
        if self.lost {
            return Err(io::Error::other("simulated power loss"));
        }
        Ok(())
    }

    fn held_file(&self, inode: usize) -> HeldFile {
        HeldFile {
            id: FileId {
                dev: 0,
                ino: inode as u64,
            },
            links: self.names.values().filter(|&&i| i == inode).count() as u64,
        }
    }

    fn open_inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let open = self.open.and_then(|i| self.inodes.get_mut(i));
        open.ok_or_else(|| not_open(path))
    }
}

impl Disk for SimulatedDisk {
    fn resolve(&mut self, path: &Path) -> io::Result<PathBuf> {
        self.powered()?;
        Ok(path.to_path_buf())
    }
    fn lock(&mut self, path: &Path) -> io::Result<HeldFile> {
        self.powered()?;
        let inode = self.inode_of(path)?;
        if self.held == Some(inode) || self.open == Some(inode) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        self.held = Some(inode);
        Ok(self.held_file(inode))
    }
    fn held(&mut self) -> io::Result<HeldFile> {
        self.powered()?;
        let inode = self.held.ok_or_else(nothing_held)?;
        Ok(self.held_file(inode))
    }
    fn identity(&mut self, path: &Path) -> io::Result<FileId> {
        self.powered()?;
        Ok(self.held_file(self.inode_of(path)?).id)
    }
    fn hold_new(&mut self) -> io::Result<()> {
        self.powered()?;
        let inode = self
            .open
            .take()
            .ok_or_else(|| io::Error::other("no new card state file is open"))?;
        self.held = Some(inode);
        Ok(())
    }
    fn exists(&mut self, path: &Path) -> io::Result<bool> {
        Ok(self.names.contains_key(path))
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        let inode = self.inode_of(path)?;
        Ok(self
            .inodes
            .get(inode)
            .map(|i| i.cached.clone())
            .unwrap_or_default())
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        let inode = self.inode_of(path)?;
        self.operation()?;
        self.names.remove(path);
        if self.open == Some(inode) {
            self.open = None;
        }
        Ok(())
    }
    fn create_new(&mut self, path: &Path) -> io::Result<()> {
        if self.names.contains_key(path) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        self.operation()?;
        self.names.insert(path.to_path_buf(), self.inodes.len());
        self.open = Some(self.inodes.len());
        self.inodes.push(Inode::default());
        Ok(())
    }
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.open_inode(path)?;
        let cut = self.operation();
        // A write cut by the power loss is torn: half of it reached the cache.
        let written = match cut {
            Ok(()) => data,
            Err(_) => data.get(..data.len() / 2).unwrap_or_default(),
        };
        self.open_inode(path)?.cached.extend_from_slice(written);
        cut
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.open_inode(path)?;
        self.operation()?;
        let inode = self.open_inode(path)?;
        inode.synced = inode.cached.clone();
        Ok(())
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let inode = self.inode_of(from)?;
        self.operation()?;
        self.names.remove(from);
        self.names.insert(to.to_path_buf(), inode);
        Ok(())
    }
    fn sync_dir(&mut self, _dir: &Path) -> io::Result<()> {
        self.operation()?;
        self.synced_names = self.names.clone();
        Ok(())
    }
    fn has_lost_power(&self) -> bool {
        self.lost
    }
}
