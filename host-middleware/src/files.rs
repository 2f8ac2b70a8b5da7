//! Files the device writes: always replaced atomically, never written in place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a file could not be written; names the file and the step.
#[derive(Debug, thiserror::Error)]
#[error("cannot {step} {}: {source}", .path.display())]
pub struct FileError {
    /// The file (or directory) concerned.
    pub path: PathBuf,
    /// What was being done, e.g. "write", "rename over", "sync the directory of".
    pub step: &'static str,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

/// Replaces `path` with `bytes` so that after a crash at any point the file
/// holds either its old content or the new one: a new file next to it,
/// written and fsynced, renamed over it, then the directory fsynced (two
/// syncs). An existing file's permissions are kept; a new file gets the
/// default mode.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    replace(path, bytes, true)
}

/// [`write_atomically`] without the final sync of the directory (one sync):
/// the replacement is atomic, and becomes durable with the next
/// [`write_atomically`] into the same directory, whose directory sync covers
/// both renames. For a group of files written one after the other, the last
/// one with [`write_atomically`]; a crash before it may leave this file old.
pub fn write_atomically_deferred(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    replace(path, bytes, false)
}

thread_local! {
    static SYNCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many syncs [`write_atomically`] and [`write_atomically_deferred`]
/// made on this thread (tests count the syncs of a use case with it).
#[doc(hidden)]
pub fn syncs_on_this_thread() -> u64 {
    SYNCS.with(|c| c.get())
}

fn synced() {
    SYNCS.with(|c| c.set(c.get() + 1));
}

fn replace(path: &Path, bytes: &[u8], sync_dir: bool) -> Result<(), FileError> {
    fn fail<'a>(step: &'static str, p: &'a Path) -> impl FnOnce(io::Error) -> FileError + 'a {
        move |source| FileError {
            path: p.to_path_buf(),
            step,
            source,
        }
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| FileError {
        path: path.to_path_buf(),
        step: "write",
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(fail("create", &tmp))?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())
                .map_err(fail("set the permissions of", &tmp))?;
        }
        file.write_all(bytes).map_err(fail("write", &tmp))?;
        file.sync_all().map_err(fail("sync", &tmp))?;
        synced();
        fs::rename(&tmp, path).map_err(fail("rename over", path))?;
        if sync_dir {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(fail("sync the directory of", path))?;
            synced();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else {
        remove_stale_temporaries(dir, name);
    }
    result
}

/// Removes the temporary files `.NAME.<pid>.tmp` that a writer of the same
/// file left behind when it was killed between creating and renaming its
/// temporary file: those whose process no longer runs (Linux `/proc`; where
/// there is no `/proc`, nothing is removed). Best effort: the replacement has
/// already succeeded.
fn remove_stale_temporaries(dir: &Path, name: &std::ffi::OsStr) {
    let proc_dir = Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return;
    }
    let Some(name) = name.to_str() else { return };
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if !proc_dir.join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Makes everything written on the file system that holds `path` durable
/// with one `syncfs(2)`: file contents, renames and new directories alike.
pub fn sync_file_system(path: &Path) -> Result<(), FileError> {
    OsFiles.sync_fs(path).map_err(|source| FileError {
        path: path.to_path_buf(),
        step: "sync the file system of",
        source,
    })?;
    synced();
    Ok(())
}

/// What a directory entry is; a symbolic link is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// The file operations a [`DirectoryTree`](crate::device_tree::DirectoryTree)
/// is made of: on the real file system ([`OsFiles`]) or on a simulated disk
/// that can lose power between any two of them
/// (`device_tree::SimulatedFiles`, for tests).
///
/// Writes and namespace changes are not durable until one of the three
/// `sync_*` calls covers them: a crash may lose them.
pub trait FileLayer: std::fmt::Debug + Send + Sync {
    /// What `path` is, `None` if nothing is there (a link is not followed).
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>>;
    /// The whole contents of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The target of a symbolic link.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// The entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<(std::ffi::OsString, EntryKind)>>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates (or truncates) a file and writes `bytes` into it; no sync.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// A second name for an existing file.
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()>;
    /// A symbolic link at `link` to `target`.
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file or a symbolic link.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes a file's contents durable (`fsync`).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes everything written on the file system that holds `path` durable
    /// (`syncfs(2)`).
    fn sync_fs(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFiles;

impl FileLayer for OsFiles {
    fn kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(kind_of(m.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(std::ffi::OsString, EntryKind)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            out.push((entry.file_name(), kind_of(entry.file_type()?)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        fs::hard_link(original, link)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn sync_fs(&self, path: &Path) -> io::Result<()> {
        let file = File::open(path)?;
        rustix::fs::syncfs(&file).map_err(io::Error::from)
    }
}

fn kind_of(t: fs::FileType) -> EntryKind {
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_writers_temporary_goes_with_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        // Above the largest pid Linux hands out (2^22): no such process.
        let stale = dir.path().join(".report.json.99999999.tmp");
        // Process 1 runs: its temporary may still be in use.
        let live = dir.path().join(".report.json.1.tmp");
        let other = dir.path().join(".other.json.99999999.tmp");
        for p in [&stale, &live, &other] {
            fs::write(p, b"half").unwrap();
        }
        write_atomically(&path, b"whole").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        assert!(!stale.exists(), "the dead writer's temporary stays");
        assert!(live.exists(), "a running writer's temporary was removed");
        assert!(other.exists(), "another file's temporary was removed");
    }

    #[test]
    fn replaces_and_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomically(&path, b"one").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // Nothing else is left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_deferred_replace_is_made_durable_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let start = syncs_on_this_thread();
        write_atomically_deferred(&dir.path().join("a.json"), b"a").unwrap();
        write_atomically(&dir.path().join("b.json"), b"b").unwrap();
        // Two files in three syncs: a.json, b.json, the directory once.
        assert_eq!(syncs_on_this_thread() - start, 3);
        assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"a");
        assert_eq!(fs::read(dir.path().join("b.json")).unwrap(), b"b");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("missing-dir.bin");
        let err = write_atomically(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("missing-dir.bin"), "{err}");
    }
}
