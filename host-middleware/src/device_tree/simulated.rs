//! A simulated disk for crash tests of [`DirectoryTree`](super::DirectoryTree):
//! an in-memory [`FileLayer`] that keeps apart what a process sees (the page
//! cache) from what is on the medium (what a sync made durable), can lose
//! power after any number of operations, and shows what the medium may hold
//! afterwards under three models ([`CrashModel`]).
//!
//! Files are inodes: a directory entry names an inode, so hard links and
//! renames behave as on a POSIX file system. `sync_file` makes one inode's
//! contents durable, `sync_dir` one directory's entries, `sync_fs` everything.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::files::{EntryKind, FileLayer};

/// What survives a power cut, beyond what was synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashModel {
    /// Nothing: only what a sync covered is on the medium (the worst case
    /// POSIX allows).
    LoseUnsynced,
    /// Every directory change up to the cut (a metadata journal committed
    /// in order), but file contents only where synced: an unsynced file is
    /// found empty. The behaviour of ext4 `data=writeback`.
    MetadataOnly,
    /// Everything the process did (a crash of the process alone, `kill -9`).
    KeepAll,
}

impl CrashModel {
    /// The three models.
    pub const ALL: [CrashModel; 3] = [
        CrashModel::LoseUnsynced,
        CrashModel::MetadataOnly,
        CrashModel::KeepAll,
    ];
}

#[derive(Debug, Clone)]
enum Entry {
    File(u64),
    Dir(u64),
    Link(PathBuf),
}

#[derive(Debug, Clone, Default)]
struct Image {
    files: BTreeMap<u64, Vec<u8>>,
    dirs: BTreeMap<u64, BTreeMap<OsString, Entry>>,
}

const ROOT: u64 = 0;

#[derive(Debug, Clone)]
struct State {
    cache: Image,
    medium: Image,
    next_ino: u64,
    ops: u64,
    cut_after: Option<u64>,
}

/// The simulated disk (see the module documentation).
#[derive(Debug)]
pub struct SimulatedFiles {
    state: Mutex<State>,
}

impl Default for SimulatedFiles {
    fn default() -> Self {
        Self::new()
    }
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", path.display()),
    )
}

fn names(path: &Path) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: only absolute, plain paths", path.display()),
                ))
            }
        }
    }
    Ok(out)
}

impl Image {
    fn dir(&self, ino: u64) -> Option<&BTreeMap<OsString, Entry>> {
        self.dirs.get(&ino)
    }

    /// The directory inode of `parts`, following symbolic links.
    fn walk(&self, parts: &[OsString], path: &Path) -> io::Result<u64> {
        let mut stack: Vec<u64> = vec![ROOT];
        let mut todo: Vec<OsString> = parts.iter().rev().cloned().collect();
        let mut hops = 0;
        while let Some(name) = todo.pop() {
            let here = *stack.last().ok_or_else(|| not_found(path))?;
            match self.dir(here).and_then(|d| d.get(&name)) {
                Some(Entry::Dir(ino)) => stack.push(*ino),
                Some(Entry::Link(target)) => {
                    hops += 1;
                    if hops > 8 || target.is_absolute() {
                        return Err(not_found(path));
                    }
                    for n in names(target)?.into_iter().rev() {
                        todo.push(n);
                    }
                }
                _ => return Err(not_found(path)),
            }
        }
        stack.last().copied().ok_or_else(|| not_found(path))
    }

    /// The parent directory inode and the last name of `path`.
    fn parent(&self, path: &Path) -> io::Result<(u64, OsString)> {
        let mut parts = names(path)?;
        let last = parts.pop().ok_or_else(|| not_found(path))?;
        Ok((self.walk(&parts, path)?, last))
    }

    fn entry(&self, path: &Path) -> io::Result<Option<Entry>> {
        let (dir, name) = self.parent(path)?;
        Ok(self.dir(dir).and_then(|d| d.get(&name)).cloned())
    }

    fn entries_mut(&mut self, ino: u64) -> &mut BTreeMap<OsString, Entry> {
        self.dirs.entry(ino).or_default()
    }

    /// The inode a path ends in, following a final symbolic link.
    fn file_ino(&self, path: &Path) -> io::Result<u64> {
        match self.entry(path)? {
            Some(Entry::File(ino)) => Ok(ino),
            Some(Entry::Link(target)) => {
                let base = path.parent().unwrap_or(Path::new("/"));
                self.file_ino(&base.join(target))
            }
            _ => Err(not_found(path)),
        }
    }
}

impl SimulatedFiles {
    /// An empty disk holding only `/`.
    pub fn new() -> SimulatedFiles {
        let mut image = Image::default();
        image.dirs.insert(ROOT, BTreeMap::new());
        SimulatedFiles {
            state: Mutex::new(State {
                cache: image.clone(),
                medium: image,
                next_ino: ROOT + 1,
                ops: 0,
                cut_after: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// How many changing operations (writes, links, renames, removals,
    /// directories made, syncs) were done.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Loses power after `more` further changing operations (`None`: never):
    /// every call then fails.
    pub fn cut_after(&self, more: Option<u64>) {
        let mut s = self.lock();
        s.cut_after = more.map(|m| s.ops + m);
    }

    /// A copy of this disk, as it is (page cache and medium).
    pub fn fork(&self) -> SimulatedFiles {
        let s = self.lock().clone();
        SimulatedFiles {
            state: Mutex::new(s),
        }
    }

    /// The disk found after a power cut now, under `model`, powered up again.
    pub fn after_crash(&self, model: CrashModel) -> SimulatedFiles {
        let s = self.lock();
        let image = match model {
            CrashModel::LoseUnsynced => s.medium.clone(),
            CrashModel::MetadataOnly => Image {
                files: s.medium.files.clone(),
                dirs: s.cache.dirs.clone(),
            },
            CrashModel::KeepAll => s.cache.clone(),
        };
        SimulatedFiles {
            state: Mutex::new(State {
                cache: image.clone(),
                medium: image,
                next_ino: s.next_ino,
                ops: 0,
                cut_after: None,
            }),
        }
    }

    /// Counts a changing operation, or fails once the power is lost.
    fn step(&self) -> io::Result<MutexGuard<'_, State>> {
        let mut s = self.lock();
        if s.cut_after.is_some_and(|cut| s.ops >= cut) {
            return Err(power_lost());
        }
        s.ops += 1;
        Ok(s)
    }

    fn look(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = self.lock();
        if s.cut_after.is_some_and(|cut| s.ops >= cut) {
            return Err(power_lost());
        }
        Ok(s)
    }
}

fn new_ino(s: &mut State) -> u64 {
    let ino = s.next_ino;
    s.next_ino += 1;
    ino
}

impl FileLayer for SimulatedFiles {
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        let s = self.look()?;
        match s.cache.entry(path) {
            Ok(e) => Ok(e.map(|e| match e {
                Entry::File(_) => EntryKind::File,
                Entry::Dir(_) => EntryKind::Dir,
                Entry::Link(_) => EntryKind::Symlink,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.look()?;
        let ino = s.cache.file_ino(path)?;
        Ok(s.cache.files.get(&ino).cloned().unwrap_or_default())
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        let s = self.look()?;
        match s.cache.entry(path)? {
            Some(Entry::Link(t)) => Ok(t),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a symbolic link", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(OsString, EntryKind)>> {
        let s = self.look()?;
        let ino = s.cache.walk(&names(dir)?, dir)?;
        Ok(s.cache
            .dir(ino)
            .map(|d| {
                d.iter()
                    .map(|(n, e)| {
                        let kind = match e {
                            Entry::File(_) => EntryKind::File,
                            Entry::Dir(_) => EntryKind::Dir,
                            Entry::Link(_) => EntryKind::Symlink,
                        };
                        (n.clone(), kind)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let mut here = ROOT;
        for name in names(dir)? {
            let existing = s.cache.dir(here).and_then(|d| d.get(&name)).cloned();
            here = match existing {
                Some(Entry::Dir(ino)) => ino,
                Some(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: not a directory", dir.display()),
                    ))
                }
                None => {
                    let ino = new_ino(&mut s);
                    s.cache.dirs.insert(ino, BTreeMap::new());
                    s.cache.entries_mut(here).insert(name, Entry::Dir(ino));
                    ino
                }
            };
        }
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.step()?;
        let (dir, name) = s.cache.parent(path)?;
        let ino = match s.cache.dir(dir).and_then(|d| d.get(&name)) {
            Some(Entry::File(ino)) => *ino,
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: not a file", path.display()),
                ))
            }
            None => {
                let ino = new_ino(&mut s);
                s.cache.entries_mut(dir).insert(name, Entry::File(ino));
                ino
            }
        };
        s.cache.files.insert(ino, bytes.to_vec());
        Ok(())
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let ino = match s.cache.entry(original)? {
            Some(Entry::File(ino)) => ino,
            _ => return Err(not_found(original)),
        };
        let (dir, name) = s.cache.parent(link)?;
        let entries = s.cache.entries_mut(dir);
        if entries.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", link.display()),
            ));
        }
        entries.insert(name, Entry::File(ino));
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let (dir, name) = s.cache.parent(link)?;
        let entries = s.cache.entries_mut(dir);
        if entries.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", link.display()),
            ));
        }
        entries.insert(name, Entry::Link(target.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let (from_dir, from_name) = s.cache.parent(from)?;
        let (to_dir, to_name) = s.cache.parent(to)?;
        if let Some(Entry::Dir(ino)) = s.cache.dir(to_dir).and_then(|d| d.get(&to_name)) {
            if s.cache.dir(*ino).is_some_and(|d| !d.is_empty()) {
                return Err(io::Error::other(format!(
                    "{}: directory not empty",
                    to.display()
                )));
            }
        }
        let entry = s
            .cache
            .entries_mut(from_dir)
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        s.cache.entries_mut(to_dir).insert(to_name, entry);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let (dir, name) = s.cache.parent(path)?;
        match s.cache.dir(dir).and_then(|d| d.get(&name)) {
            Some(Entry::File(_)) | Some(Entry::Link(_)) => {
                s.cache.entries_mut(dir).remove(&name);
                Ok(())
            }
            Some(Entry::Dir(_)) => Err(io::Error::other(format!(
                "{}: is a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let (parent, name) = s.cache.parent(dir)?;
        match s.cache.dir(parent).and_then(|d| d.get(&name)) {
            Some(Entry::Dir(_)) => {
                s.cache.entries_mut(parent).remove(&name);
                Ok(())
            }
            _ => Err(not_found(dir)),
        }
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let ino = s.cache.file_ino(path)?;
        let data = s.cache.files.get(&ino).cloned().unwrap_or_default();
        s.medium.files.insert(ino, data);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        let ino = s.cache.walk(&names(dir)?, dir)?;
        let entries = s.cache.dir(ino).cloned().unwrap_or_default();
        s.medium.dirs.insert(ino, entries);
        Ok(())
    }

    fn sync_fs(&self, _path: &Path) -> io::Result<()> {
        let mut s = self.step()?;
        s.medium = s.cache.clone();
        Ok(())
    }
}
