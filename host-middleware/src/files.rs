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
/// written and fsynced, renamed over it, then the directory fsynced. An
/// existing file's permissions are kept; a new file gets the default mode.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
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
        fs::rename(&tmp, path).map_err(fail("rename over", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail("sync the directory of", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("missing-dir.bin");
        let err = write_atomically(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("missing-dir.bin"), "{err}");
    }
}
