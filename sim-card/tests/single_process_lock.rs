//! One process per card: the file store locks the state file itself (its
//! inode), whatever is done to the files beside it, to its other names or to
//! the file under a running card. Each scenario runs on the real file system
//! ([`OsDisk`]); the self-tests at the end run the same scenarios on
//! deliberately broken disks (the lock on a separate `<file>.lock`, as
//! before; no identity check before the rename) and must see them fail.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use dmsc_sim_card::disk::{Disk, FileId, HeldFile, OsDisk};
use dmsc_sim_card::file_store::{FileStore, StateLock};
use dmsc_sim_card::store::{LockConflict, ReplacedHow};
use dmsc_sim_card::{PersistentMemory, StoreError};
use tempfile::TempDir;

type Check = Result<(), String>;

/// A state at `<dir>/card.state` holding one record, created on `disk`.
fn new_state<D: Disk>(dir: &TempDir, disk: D) -> (FileStore<D>, PathBuf) {
    let path = dir.path().join("card.state");
    let mut store = FileStore::create_on(disk, &path).expect("create");
    commit(&mut store, b"pin", b"3").expect("first commit");
    (store, path)
}

fn commit<D: Disk>(store: &mut FileStore<D>, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    store.begin()?;
    store.write(key, value)?;
    store.commit()
}

/// `Ok` if `opened` was refused because another handle holds the card.
fn refused_in_use<D: Disk>(what: &str, opened: Result<FileStore<D>, StoreError>) -> Check {
    match opened {
        Err(StoreError::InUse {
            conflict: LockConflict::Held,
            ..
        }) => Ok(()),
        Err(e) => Err(format!("{what}: refused, but not as in use: {e}")),
        Ok(_) => Err(format!("{what}: a second handle opened the card")),
    }
}

fn remove_if_there(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn lock_file_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// A second open is refused while the first handle lives, also after a
/// `<file>.lock` beside it is deleted and after a commit replaced the file.
fn second_open_is_refused<D: Disk>(disk: impl Fn() -> D) -> Check {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = new_state(&dir, disk());
    remove_if_there(&lock_file_of(&path));
    refused_in_use(
        "after deleting card.state.lock",
        FileStore::open_on(disk(), &path),
    )?;
    commit(&mut store, b"pin", b"2").map_err(|e| e.to_string())?;
    remove_if_there(&lock_file_of(&path));
    refused_in_use("after a commit", FileStore::open_on(disk(), &path))?;
    drop(store);
    FileStore::open_on(disk(), &path)
        .map(drop)
        .map_err(|e| format!("once the first handle is gone: {e}"))
}

/// Through a symbolic link (from another directory too) the same lock is met,
/// and a commit through a link writes the target and keeps the link.
fn symlinks_meet_the_same_lock<D: Disk>(disk: impl Fn() -> D) -> Check {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (store, path) = new_state(&dir, disk());
    let link = dir.path().join("link.state");
    let far = elsewhere.path().join("far.state");
    std::os::unix::fs::symlink("card.state", &link).unwrap();
    std::os::unix::fs::symlink(&path, &far).unwrap();
    refused_in_use("through a symbolic link", FileStore::open_on(disk(), &link))?;
    refused_in_use(
        "through a symbolic link in another directory",
        FileStore::open_on(disk(), &far),
    )?;
    drop(store);
    let mut through_link = FileStore::open_on(disk(), &far).map_err(|e| e.to_string())?;
    refused_in_use(
        "the real name while a link's handle lives",
        FileStore::open_on(disk(), &path),
    )?;
    commit(&mut through_link, b"pin", b"1").map_err(|e| e.to_string())?;
    if !fs::symlink_metadata(&far).unwrap().file_type().is_symlink() {
        return Err("a commit through a symbolic link replaced the link".into());
    }
    refused_in_use(
        "the real name after a commit through a link",
        FileStore::open_on(disk(), &path),
    )?;
    drop(through_link);
    let state = FileStore::open_on(disk(), &path)
        .and_then(|mut s| s.load())
        .map_err(|e| e.to_string())?;
    if state.get(&b"pin"[..]).map(Vec::as_slice) != Some(&b"1"[..]) {
        return Err("the commit through the link did not reach the state file".into());
    }
    Ok(())
}

/// Through a hard link the same lock is met; without a holder, a state file
/// with two names is refused (a commit would leave a stale copy).
fn hard_links_meet_the_same_lock<D: Disk>(disk: impl Fn() -> D) -> Check {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = new_state(&dir, disk());
    let alias = dir.path().join("alias.state");
    fs::hard_link(&path, &alias).unwrap();
    refused_in_use("through a hard link", FileStore::open_on(disk(), &alias))?;
    // The running card refuses to commit while its file has two names.
    match commit(&mut store, b"pin", b"2") {
        Err(StoreError::Replaced {
            found: ReplacedHow::HardLinks { names: 2, .. },
            ..
        }) => {}
        other => return Err(format!("commit with a second name: {other:?}")),
    }
    drop(store);
    match FileStore::open_on(disk(), &alias) {
        Err(StoreError::Replaced {
            found: ReplacedHow::HardLinks { names: 2, .. },
            ..
        }) => {}
        Err(e) => return Err(format!("open of a file with two names: {e}")),
        Ok(_) => return Err("a state file with two names was opened".into()),
    }
    fs::remove_file(&alias).unwrap();
    let mut store = FileStore::open_on(disk(), &path).map_err(|e| e.to_string())?;
    commit(&mut store, b"pin", b"2").map_err(|e| e.to_string())
}

/// `Ok` if the commit was refused as `Replaced` with `words` in the message,
/// leaving the committed state in memory as it was.
fn refused_replaced<D: Disk>(what: &str, store: &mut FileStore<D>, words: &str) -> Check {
    let before = store.load().map_err(|e| e.to_string())?;
    match commit(store, b"pin", b"0") {
        Err(e @ StoreError::Replaced { .. }) if e.to_string().contains(words) => {}
        Err(e) => return Err(format!("{what}: refused, but not as replaced: {e}")),
        Ok(()) => return Err(format!("{what}: the commit went through")),
    }
    if store.load().map_err(|e| e.to_string())? != before {
        return Err(format!("{what}: the state in memory changed"));
    }
    Ok(())
}

/// Renaming the state file away, or renaming another file over it, under a
/// running card makes its next commit refuse; the file put in place is left
/// as it is.
fn a_replaced_file_is_noticed_at_commit<D: Disk>(disk: impl Fn() -> D) -> Check {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = new_state(&dir, disk());
    let moved = dir.path().join("moved.state");
    fs::rename(&path, &moved).unwrap();
    refused_replaced("renamed away", &mut store, "no longer exists")?;
    if path.exists() {
        return Err("a refused commit created the state file again".into());
    }
    fs::rename(&moved, &path).unwrap();
    commit(&mut store, b"pin", b"2").map_err(|e| format!("renamed back: {e}"))?;

    // A copy renamed over it: a second process could open the copy.
    let copy = dir.path().join("copy.state");
    fs::copy(&path, &copy).unwrap();
    fs::rename(&copy, &path).unwrap();
    let planted = fs::read(&path).unwrap();
    refused_replaced("replaced by a copy", &mut store, "was replaced")?;
    if fs::read(&path).unwrap() != planted {
        return Err("a refused commit wrote over the file put in place".into());
    }
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    if names.len() != 1 {
        return Err(format!("files left beside the state: {names:?}"));
    }
    Ok(())
}

/// Opening, creating and committing leave nothing beside the state file,
/// also for a corrupt or a missing state.
fn no_lock_files_beside_states<D: Disk>(disk: impl Fn() -> D) -> Check {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, path) = new_state(&dir, disk());
    commit(&mut store, b"pin", b"2").map_err(|e| e.to_string())?;
    drop(store);
    drop(FileStore::open_on(disk(), &path).map_err(|e| e.to_string())?);
    let corrupt = dir.path().join("corrupt.state");
    fs::write(&corrupt, b"DMSCCARD\x01\x00garbage").unwrap();
    if !matches!(
        FileStore::open_on(disk(), &corrupt),
        Err(StoreError::Corrupt { .. })
    ) {
        return Err("a corrupt state was not refused as corrupt".into());
    }
    let missing = dir.path().join("missing.state");
    if FileStore::open_on(disk(), &missing).is_ok() {
        return Err("a missing state opened".into());
    }
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names != ["card.state", "corrupt.state"] {
        return Err(format!("files beside the states: {names:?}"));
    }
    Ok(())
}

#[test]
fn a_second_open_is_refused_even_after_the_old_lock_file_is_deleted() {
    second_open_is_refused(OsDisk::default).unwrap();
}

#[test]
fn a_symbolic_link_meets_the_same_lock() {
    symlinks_meet_the_same_lock(OsDisk::default).unwrap();
}

#[test]
fn a_hard_link_meets_the_same_lock_and_two_names_are_refused() {
    hard_links_meet_the_same_lock(OsDisk::default).unwrap();
}

#[test]
fn a_state_file_replaced_or_renamed_under_a_running_card_is_refused_at_commit() {
    a_replaced_file_is_noticed_at_commit(OsDisk::default).unwrap();
}

#[test]
fn no_lock_file_appears_beside_a_state_valid_corrupt_or_missing() {
    no_lock_files_beside_states(OsDisk::default).unwrap();
    // The same through the public constructors.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.state");
    let mut store = FileStore::create(&path).unwrap();
    commit(&mut store, b"pin", b"3").unwrap();
    drop(store);
    drop(FileStore::open(&path).unwrap());
    let corrupt = dir.path().join("corrupt.state");
    fs::write(&corrupt, b"DMSCCARD\x01\x00garbage").unwrap();
    assert!(matches!(
        FileStore::open(&corrupt),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(FileStore::open(dir.path().join("missing.state")).is_err());
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["card.state", "corrupt.state"]);
}

#[test]
fn an_old_lock_file_beside_a_state_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_state(&dir, OsDisk::default());
    drop(store);
    // Left by an older build, and even held by someone.
    let old = File::create(lock_file_of(&path)).unwrap();
    old.try_lock().unwrap();
    let mut store = FileStore::open(&path).unwrap();
    commit(&mut store, b"pin", b"2").unwrap();
}

#[test]
fn replacing_a_whole_state_takes_the_same_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = new_state(&dir, OsDisk::default());
    assert!(matches!(
        StateLock::acquire(&path),
        Err(StoreError::InUse { .. })
    ));
    drop(store);
    // A corrupt state can be locked and replaced.
    fs::write(&path, b"garbage").unwrap();
    let lock = StateLock::acquire(&path).unwrap();
    assert!(matches!(
        FileStore::open(&path),
        Err(StoreError::InUse { .. })
    ));
    let staged = dir.path().join("staged.state");
    drop(FileStore::create(&staged).unwrap());
    let image = fs::read(&staged).unwrap();
    lock.replace_with(&staged).unwrap();
    assert_eq!(fs::read(&path).unwrap(), image);
    drop(FileStore::open(&path).unwrap());
}

// ---- self-tests: deliberately broken disks -------------------------------------------

/// The scheme this replaces: an exclusive lock on `<name>.lock` beside the
/// name as given, the state file itself unlocked until a commit.
#[derive(Default)]
struct NameLockDisk {
    inner: OsDisk,
    lock_file: Option<File>,
    held: Option<HeldFile>,
}

fn identity_of(meta: &fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

impl Disk for NameLockDisk {
    fn resolve(&mut self, path: &Path) -> io::Result<PathBuf> {
        Ok(path.to_path_buf())
    }
    fn lock(&mut self, path: &Path) -> io::Result<HeldFile> {
        let meta = fs::metadata(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_file_of(path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let held = HeldFile {
            id: identity_of(&meta),
            links: meta.nlink(),
        };
        self.lock_file = Some(file);
        self.held = Some(held);
        Ok(held)
    }
    fn held(&mut self) -> io::Result<HeldFile> {
        self.inner
            .held()
            .or_else(|e| self.held.ok_or(e))
            .map(|h| HeldFile { links: 1, ..h })
    }
    /// Names were never told apart from the files they lead to.
    fn identity(&mut self, path: &Path) -> io::Result<FileId> {
        Ok(identity_of(&fs::metadata(path)?))
    }
    fn hold_new(&mut self) -> io::Result<()> {
        self.inner.hold_new()
    }
    fn exists(&mut self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn create_new(&mut self, path: &Path) -> io::Result<()> {
        self.inner.create_new(path)
    }
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(path, data)
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.inner.sync_file(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

/// A correct lock, but the path's identity is never really checked: it is
/// always reported as the held file.
#[derive(Default)]
struct NoIdentityCheckDisk(OsDisk);

impl Disk for NoIdentityCheckDisk {
    fn resolve(&mut self, path: &Path) -> io::Result<PathBuf> {
        self.0.resolve(path)
    }
    fn lock(&mut self, path: &Path) -> io::Result<HeldFile> {
        self.0.lock(path)
    }
    fn held(&mut self) -> io::Result<HeldFile> {
        self.0.held()
    }
    fn identity(&mut self, path: &Path) -> io::Result<FileId> {
        match self.0.held() {
            Ok(held) => Ok(held.id),
            Err(_) => self.0.identity(path),
        }
    }
    fn hold_new(&mut self) -> io::Result<()> {
        self.0.hold_new()
    }
    fn exists(&mut self, path: &Path) -> io::Result<bool> {
        self.0.exists(path)
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        self.0.read(path)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.0.remove(path)
    }
    fn create_new(&mut self, path: &Path) -> io::Result<()> {
        self.0.create_new(path)
    }
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.0.write_all(path, data)
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        self.0.sync_file(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
}

#[test]
fn self_test_a_lock_on_a_separate_lock_file_is_caught() {
    let err = second_open_is_refused(NameLockDisk::default).unwrap_err();
    assert!(err.contains("a second handle opened the card"), "{err}");
    let err = symlinks_meet_the_same_lock(NameLockDisk::default).unwrap_err();
    assert!(err.contains("a second handle opened the card"), "{err}");
    let err = hard_links_meet_the_same_lock(NameLockDisk::default).unwrap_err();
    assert!(err.contains("a second handle opened the card"), "{err}");
    let err = no_lock_files_beside_states(NameLockDisk::default).unwrap_err();
    assert!(err.contains(".lock"), "{err}");
}

#[test]
fn self_test_a_commit_without_the_identity_check_is_caught() {
    let err = a_replaced_file_is_noticed_at_commit(NoIdentityCheckDisk::default).unwrap_err();
    assert!(err.contains("renamed away"), "{err}");
}
