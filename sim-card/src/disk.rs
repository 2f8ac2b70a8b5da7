//! The file-system operations a [`FileStore`](crate::file_store::FileStore)
//! is made of, on the real file system ([`OsDisk`]) or on a simulated disk
//! that loses power between any two of them ([`SimulatedDisk`]).
//!
//! A commit of the file store is exactly this sequence of [`Disk`] calls:
//! `remove(<file>.tmp)`, `create_new(<file>.tmp)`, `write_all`,
//! `sync_file`, `rename(<file>.tmp, <file>)`, `sync_dir`. The simulated disk
//! keeps apart what a process sees (the page cache) from what is on the
//! medium (what was synced), so a power cut after any of those calls can be
//! replayed, and every state the medium may be found in afterwards
//! ([`AfterCrash`]) can be opened again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file-system operations of a [`FileStore`](crate::file_store::FileStore).
///
/// Errors are `io::Error`s with the usual kinds (`NotFound` for a missing
/// file, `AlreadyExists` for `create_new` over an existing one).
pub trait Disk {
    /// Whether anything (file, directory, link) exists at `path`.
    fn exists(&mut self, path: &Path) -> io::Result<bool>;
    /// The whole contents of the file at `path`.
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>>;
    /// Removes the file at `path`.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Creates an empty file at `path`, which must not exist, readable and
    /// writable by its owner only, and opens it for writing.
    fn create_new(&mut self, path: &Path) -> io::Result<()>;
    /// Appends `data` to the file opened by [`create_new`](Disk::create_new).
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Makes the contents of the open file durable (fsync) and closes it.
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
    /// The file being written between `create_new` and `sync_file`.
    open: Option<File>,
}

impl OsDisk {
    fn open_file(&mut self, path: &Path) -> io::Result<&mut File> {
        self.open.as_mut().ok_or_else(|| not_open(path))
    }
}

fn not_open(path: &Path) -> io::Error {
    io::Error::other(format!("{} is not open for writing", path.display()))
}

impl Disk for OsDisk {
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
        fs::remove_file(path)
    }
    fn create_new(&mut self, path: &Path) -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        // The state holds PINs and keys in clear, like a chip's EEPROM: owner only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        self.open = Some(options.open(path)?);
        Ok(())
    }
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.open_file(path)?.write_all(data)
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        let synced = self.open_file(path)?.sync_all();
        self.open = None;
        synced
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
/// and `sync_dir` syncs it whatever its argument.
#[derive(Debug, Clone, Default)]
pub struct SimulatedDisk {
    inodes: Vec<Inode>,
    /// Names as a process sees them.
    names: BTreeMap<PathBuf, usize>,
    /// Names as on the medium.
    synced_names: BTreeMap<PathBuf, usize>,
    /// The inode opened by the last `create_new`, until `sync_file`.
    open: Option<usize>,
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

    fn open_inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let open = self.open.and_then(|i| self.inodes.get_mut(i));
        open.ok_or_else(|| not_open(path))
    }
}

impl Disk for SimulatedDisk {
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
        self.inode_of(path)?;
        self.operation()?;
        self.names.remove(path);
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
        self.open = None;
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
