//! The device's own DM tree: the [`DeviceTree`] trait and its default
//! implementation, [`DirectoryTree`], a directory of TNDS files with an index
//! (layout and crash safety: docs/device-tree.md).
//!
//! Every change goes through [`DeviceTree::apply`], which is atomic: after a
//! crash at any point the tree is the old one or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::files::{EntryKind, FileLayer, OsFiles};
use crate::mo::{MgmtTree, MoError};

mod simulated;
#[doc(hidden)]
pub use simulated::{CrashModel, SimulatedFiles};

/// The version of the index file's schema.
pub const INDEX_SCHEMA_VERSION: u32 = 1;

/// Which card (and which state of it) the device last refreshed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardMark {
    /// The card ID, hex.
    pub card_id: String,
    /// The card's generation counter at that refresh.
    pub generation: u64,
}

/// Where an MO of the device tree came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum Origin {
    /// The device's own configuration.
    Device,
    /// Provisioned from a card: it goes when that card goes.
    Card {
        /// The card ID, hex.
        card_id: String,
        /// The card's generation when it was read.
        generation: u64,
        /// The MO record's version on the card.
        version: u32,
    },
    /// Applied from a UICC's smartcard bootstrap (OMA DM or LwM2M, docs/standard-cards.md):
    /// it goes when that UICC goes or its bootstrap changes.
    Uicc {
        /// The UICC's ICCID (digits).
        iccid: String,
        /// `sha256:` digest of the UICC's bootstrap data.
        digest: String,
    },
    /// The device's factory bootstrap: in force only while no card provides
    /// anything (docs/bootstrap.md).
    Factory {
        /// `sha256:` digest of the factory bootstrap file.
        digest: String,
    },
}

impl Origin {
    /// The card ID (a UICC's ICCID), for MOs that came from a card.
    pub fn card_id(&self) -> Option<&str> {
        match self {
            Origin::Device | Origin::Factory { .. } => None,
            Origin::Card { card_id, .. } => Some(card_id),
            Origin::Uicc { iccid, .. } => Some(iccid),
        }
    }
}

/// One MO of the device tree, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The TNDS file, relative to the tree (e.g. `mo/DMAcc.xml`; trees
    /// written before visible names have `mo/.%2FDMAcc.xml`).
    pub file: String,
    /// Where it came from.
    pub origin: Origin,
}

/// The index of a device tree (`tree.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeIndex {
    /// [`INDEX_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The card of the last refresh, if any.
    #[serde(default)]
    pub last_card: Option<CardMark>,
    /// The MOs by root URI.
    #[serde(default)]
    pub mos: BTreeMap<String, IndexEntry>,
    /// Entries that other use cases keep in the index (kept as they are).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Default for TreeIndex {
    fn default() -> Self {
        TreeIndex {
            schema_version: INDEX_SCHEMA_VERSION,
            last_card: None,
            mos: BTreeMap::new(),
            other: serde_json::Map::new(),
        }
    }
}

/// What to do with the last-refresh mark.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LastCard {
    /// Leave it.
    #[default]
    Keep,
    /// Set it.
    Set(CardMark),
    /// Forget it.
    Clear,
}

/// One atomic change of a device tree.
#[derive(Debug, Clone, Default)]
pub struct TreeChange {
    /// MOs to create or replace, by root URI.
    pub put: Vec<(String, MgmtTree, Origin)>,
    /// MOs to remove, by root URI.
    pub remove: Vec<String>,
    /// The last-refresh mark.
    pub last_card: LastCard,
}

impl TreeChange {
    /// Whether the change does nothing.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.remove.is_empty() && self.last_card == LastCard::Keep
    }
}

/// Why the device tree could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The index is not valid JSON or not an index.
    #[error("{path}: line {line}, column {column}: {}", without_position(.source))]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A TNDS file of the tree does not parse.
    #[error("{path}: {source}")]
    Mo {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: MoError,
    },
    /// The tree's files contradict each other; [`Inconsistency`] says how.
    #[error("{0}")]
    Inconsistent(#[source] Inconsistency),
    /// The directory is not a device tree (and was not to be created).
    #[error("{}: {reason}", path.display())]
    NotATree {
        /// The directory.
        path: PathBuf,
        /// Why it is not taken for one (the message says what to do).
        reason: NotATree,
    },
    /// The index could not be serialized.
    #[error("cannot write the index: {0}")]
    IndexNotWritten(#[source] serde_json::Error),
    /// [`DirectoryTree::apply_crashing_at`] stopped at its crash point.
    #[error("simulated crash ({0:?})")]
    SimulatedCrash(CrashPoint),
}

/// serde_json's message without its " at line L column C" (the error names them).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((head, _)) => head.to_string(),
        None => text,
    }
}

/// How the files of a device tree contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// `current` points to something that is not a tree directory.
    #[error("{}: `current` points to {}, which is not a tree directory", .root.display(), .target.display())]
    CurrentNotATree {
        /// The device tree.
        root: PathBuf,
        /// Where `current` points.
        target: PathBuf,
    },
    /// The index names an MO, but there is no current tree to hold it.
    #[error("the index names {uri} but there is no current tree")]
    NoCurrentTree {
        /// The MO's root URI.
        uri: String,
    },
    /// The index has a schema version this version does not read.
    #[error("{}: schema_version {found} is not {expected}", .path.display())]
    SchemaVersion {
        /// The index file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The one read here.
        expected: u32,
    },
}

/// Why a directory is not taken for a device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotATree {
    /// The directory does not exist.
    #[error("no such directory: check the path, or create a device tree there (--init)")]
    Missing,
    /// The path is not a directory.
    #[error("not a directory")]
    NotADirectory,
    /// A directory without the marker, `trees/` or `current`.
    #[error(
        "not a device tree (it has no {MARKER_FILE}, trees/ or current): check the path, or \
         create a device tree there (--init, which takes only an empty or new directory)"
    )]
    NoMarker,
    /// A directory that holds other files (a tree is created only in a new or
    /// empty directory).
    #[error(
        "not empty and not a device tree: a device tree is created only in a new or empty \
         directory"
    )]
    NotEmpty,
}

/// The file that marks a directory as a device tree (docs/device-tree.md).
pub const MARKER_FILE: &str = "device-tree.json";

/// The marker's content.
const MARKER_TEXT: &str = "{\n  \"format\": \"dmsc-device-tree\",\n  \"layout\": 2\n}\n";

/// A device's DM tree. Integrators implement it over their own store;
/// [`DirectoryTree`] is the default.
pub trait DeviceTree {
    /// The index: MOs, their origins, the last refresh.
    fn index(&self) -> Result<TreeIndex, TreeError>;
    /// One MO by root URI, if present.
    fn read_mo(&self, uri: &str) -> Result<Option<MgmtTree>, TreeError>;
    /// Applies a change atomically: all of it or none of it, also across a crash.
    fn apply(&mut self, change: &TreeChange) -> Result<(), TreeError>;
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn percent_encode(text: &str, out: &mut String) {
    for (i, b) in text.bytes().enumerate() {
        // A leading '.' would make a hidden file.
        if is_plain(b) && !(i == 0 && b == b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The file name of an MO: its root URI without the leading `./`, with every
/// byte other than `A-Z a-z 0-9 . _ -` (and a leading `.`) written `%XX`,
/// then `.xml`: `./DMAcc` → `DMAcc.xml`, `./Vendor/Acme` →
/// `Vendor%2FAcme.xml`. A URI that does not start with `./` is written whole
/// after `%2F` (a name no `./` URI gives). The mapping is reversible
/// ([`uri_for_file_name`]), so two URIs never share a file, and no name starts
/// with a dot. The names are case-sensitive.
pub fn file_name_for(uri: &str) -> String {
    let mut out = String::new();
    match uri.strip_prefix("./") {
        Some(rest) => percent_encode(rest, &mut out),
        None => {
            out.push_str("%2F");
            percent_encode(uri, &mut out);
        }
    }
    out.push_str(".xml");
    out
}

/// The root URI of an MO file name made by [`file_name_for`] (or by the
/// earlier scheme, `.%2FDMAcc.xml`), if it is one.
pub fn uri_for_file_name(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".xml")?;
    let mut bytes = Vec::new();
    let mut it = stem.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = (it.next()? as char).to_digit(16)?;
            let lo = (it.next()? as char).to_digit(16)?;
            bytes.push((hi * 16 + lo) as u8);
        } else if is_plain(b) {
            bytes.push(b);
        } else {
            return None;
        }
    }
    let decoded = String::from_utf8(bytes).ok()?;
    if stem.starts_with('.') {
        // The earlier scheme: the whole URI encoded, `.` kept.
        return Some(decoded);
    }
    match decoded.strip_prefix('/') {
        Some(whole) if stem.starts_with("%2F") => Some(whole.to_string()),
        _ => Some(format!("./{decoded}")),
    }
}

/// Where a crash is simulated in [`DirectoryTree::apply_crashing_at`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After some of the new tree's files are written.
    MidStaging,
    /// After the new tree is complete and synced, before the switch.
    BeforeSwitch,
    /// After the switch, before the old tree is removed.
    AfterSwitch,
}

/// An earlier, broken order of a change, put back for the self-tests of the
/// crash checks ([`DirectoryTree::reintroduce`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regression {
    /// Switch `current` (and sync `DIR`) before the new generation is synced.
    RenameBeforeSync,
}

/// What a [`DirectoryTree`] (and its clones) did to the disk since it was
/// opened, counted at the file layer (docs/device-tree.md, "Counters").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Every call that waits for the medium: `fsync` of a file or a
    /// directory, and `syncfs`.
    pub syncs: u64,
    /// `fsync` of a file.
    pub file_syncs: u64,
    /// `fsync` of a directory.
    pub dir_syncs: u64,
    /// `syncfs` of the file system.
    pub fs_syncs: u64,
    /// Bytes written into files.
    pub bytes_written: u64,
    /// Files written.
    pub files_written: u64,
    /// Files carried into a new generation by a hard link (nothing written).
    pub files_linked: u64,
    /// Renames.
    pub renames: u64,
}

impl std::ops::Sub for IoStats {
    type Output = IoStats;
    fn sub(self, o: IoStats) -> IoStats {
        IoStats {
            syncs: self.syncs - o.syncs,
            file_syncs: self.file_syncs - o.file_syncs,
            dir_syncs: self.dir_syncs - o.dir_syncs,
            fs_syncs: self.fs_syncs - o.fs_syncs,
            bytes_written: self.bytes_written - o.bytes_written,
            files_written: self.files_written - o.files_written,
            files_linked: self.files_linked - o.files_linked,
            renames: self.renames - o.renames,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    file_syncs: AtomicU64,
    dir_syncs: AtomicU64,
    fs_syncs: AtomicU64,
    bytes_written: AtomicU64,
    files_written: AtomicU64,
    files_linked: AtomicU64,
    renames: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// The default device tree: a directory (docs/device-tree.md).
///
/// ```text
/// DIR/device-tree.json            marks the directory as a device tree
/// DIR/current        symbolic link to trees/<n>, switched atomically
/// DIR/trees/<n>/tree.json          the index
/// DIR/trees/<n>/mo/<file>.xml      one TNDS document per MO (file_name_for)
/// DIR/trees/<n>/<other>/…          other use cases' files, carried over
/// ```
///
/// A change writes the new generation `trees/<n+1>` without syncing file by
/// file, makes it durable with one `syncfs`, switches `current` to it by a
/// rename and syncs `DIR`: two syncs per change whatever the number of MOs.
#[derive(Debug, Clone)]
pub struct DirectoryTree {
    root: PathBuf,
    files: Arc<dyn FileLayer>,
    counters: Arc<Counters>,
    regression: Option<Regression>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DirectoryTree {
    /// Opens the device tree in `root`, creating it when `root` is not one
    /// yet (any directory is taken). Software that gets the directory from a
    /// user should use [`DirectoryTree::open_existing`] and, only when asked
    /// to, [`DirectoryTree::init`]: a mistyped path then fails instead of
    /// starting an empty tree.
    pub fn open(root: &Path) -> Result<DirectoryTree, TreeError> {
        Self::open_with(root, Arc::new(OsFiles))
    }

    /// [`DirectoryTree::open`] over another file layer (for instance the
    /// simulated disk of the crash tests, [`SimulatedFiles`]).
    pub fn open_with(root: &Path, files: Arc<dyn FileLayer>) -> Result<DirectoryTree, TreeError> {
        files.create_dir_all(root).map_err(io(root))?;
        Self::finish_open(root, files)
    }

    /// Opens the device tree in `root`, which must be one: it holds the
    /// marker [`MARKER_FILE`], or (trees made before the marker) `trees/` or
    /// `current`, and then gets the marker. Anything else is
    /// [`TreeError::NotATree`].
    pub fn open_existing(root: &Path) -> Result<DirectoryTree, TreeError> {
        let not = |reason: NotATree| TreeError::NotATree {
            path: root.to_path_buf(),
            reason,
        };
        match fs::metadata(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not(NotATree::Missing))
            }
            Err(e) => return Err(io(root)(e)),
            Ok(m) if !m.is_dir() => return Err(not(NotATree::NotADirectory)),
            Ok(_) => {}
        }
        if !Self::is_device_tree(root)? {
            return Err(not(NotATree::NoMarker));
        }
        Self::finish_open(root, Arc::new(OsFiles))
    }

    /// Creates a device tree in `root` (a new or empty directory), or opens
    /// the one that is there. A directory holding anything else is refused
    /// ([`TreeError::NotATree`]): the tree is not mixed with other files.
    pub fn init(root: &Path) -> Result<DirectoryTree, TreeError> {
        Self::check_init(root)?;
        Self::open(root)
    }

    /// Whether [`DirectoryTree::init`] would take `root`, without creating
    /// anything: a device tree, an empty directory, or a path that does not
    /// exist yet.
    pub fn check_init(root: &Path) -> Result<(), TreeError> {
        if root.exists() && !root.is_dir() {
            return Err(TreeError::NotATree {
                path: root.to_path_buf(),
                reason: NotATree::NotADirectory,
            });
        }
        if root.is_dir() && !Self::is_device_tree(root)? {
            let mut entries = fs::read_dir(root).map_err(io(root))?;
            if entries.next().is_some() {
                return Err(TreeError::NotATree {
                    path: root.to_path_buf(),
                    reason: NotATree::NotEmpty,
                });
            }
        }
        Ok(())
    }

    /// Whether `root` is a device tree: it holds [`MARKER_FILE`], `trees/` or
    /// `current` (the last two: trees made before the marker).
    pub fn is_device_tree(root: &Path) -> Result<bool, TreeError> {
        for name in [MARKER_FILE, "trees", "current"] {
            match fs::symlink_metadata(root.join(name)) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(root)(e)),
            }
        }
        Ok(false)
    }

    fn finish_open(root: &Path, files: Arc<dyn FileLayer>) -> Result<DirectoryTree, TreeError> {
        let tree = DirectoryTree {
            root: root.to_path_buf(),
            files,
            counters: Arc::new(Counters::default()),
            regression: None,
        };
        let trees = root.join("trees");
        tree.files.create_dir_all(&trees).map_err(io(&trees))?;
        let marker = root.join(MARKER_FILE);
        if tree.files.kind(&marker).map_err(io(&marker))?.is_none() {
            // Written beside and renamed: no process sees a half marker. One
            // syncfs makes the marker and `trees/` durable; after a power cut
            // before it the marker may be missing or empty, and its content
            // is never read.
            let tmp = root.join(format!("{MARKER_FILE}.new"));
            tree.write(&tmp, MARKER_TEXT.as_bytes())?;
            tree.rename(&tmp, &marker)?;
            tree.sync_fs(root)?;
        }
        tree.collect_garbage()?;
        Ok(tree)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What this tree (and its clones) did to the disk since it was opened:
    /// syncs, bytes written, renames.
    pub fn io_stats(&self) -> IoStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (file_syncs, dir_syncs, fs_syncs) =
            (get(&c.file_syncs), get(&c.dir_syncs), get(&c.fs_syncs));
        IoStats {
            syncs: file_syncs + dir_syncs + fs_syncs,
            file_syncs,
            dir_syncs,
            fs_syncs,
            bytes_written: get(&c.bytes_written),
            files_written: get(&c.files_written),
            files_linked: get(&c.files_linked),
            renames: get(&c.renames),
        }
    }

    /// Puts back an earlier, broken behaviour (self-tests of the crash
    /// checks only).
    #[doc(hidden)]
    pub fn reintroduce(&mut self, regression: Regression) {
        self.regression = Some(regression);
    }

    /// The directory of the current tree, if any change was ever applied.
    pub fn current_dir(&self) -> Result<Option<PathBuf>, TreeError> {
        let link = self.root.join("current");
        match self.files.read_link(&link) {
            Ok(target) => Ok(Some(self.root.join(target))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TreeError::Io {
                path: link,
                source: e,
            }),
        }
    }

    /// The path of an MO's TNDS file through `DIR/current` (e.g.
    /// `DIR/current/mo/DMAcc.xml`), if the MO exists. The path stays valid
    /// across changes: `current` always points to the tree in force, while
    /// the generation directory behind it goes at the next change.
    pub fn mo_path(&self, uri: &str) -> Result<Option<PathBuf>, TreeError> {
        if self.current_dir()?.is_none() {
            return Ok(None);
        }
        let index = self.index()?;
        Ok(index
            .mos
            .get(uri)
            .map(|e| self.root.join("current").join(&e.file)))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), TreeError> {
        self.files.write_file(path, bytes).map_err(io(path))?;
        bump(&self.counters.files_written, 1);
        bump(&self.counters.bytes_written, bytes.len() as u64);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), TreeError> {
        self.files.rename(from, to).map_err(io(to))?;
        bump(&self.counters.renames, 1);
        Ok(())
    }

    fn sync_fs(&self, path: &Path) -> Result<(), TreeError> {
        self.files.sync_fs(path).map_err(io(path))?;
        bump(&self.counters.fs_syncs, 1);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> Result<(), TreeError> {
        self.files.sync_dir(path).map_err(io(path))?;
        bump(&self.counters.dir_syncs, 1);
        Ok(())
    }

    /// Carries a file of the current generation into the new one: a hard
    /// link (files are never changed in place), or a copy where the file
    /// system has no hard links.
    fn carry_file(&self, from: &Path, to: &Path) -> Result<(), TreeError> {
        if self.files.hard_link(from, to).is_ok() {
            bump(&self.counters.files_linked, 1);
            return Ok(());
        }
        let bytes = self.files.read(from).map_err(io(from))?;
        self.write(to, &bytes)
    }

    /// Carries a directory entry of the current generation (other use
    /// cases' files) into the new one, directories recursively.
    fn carry(&self, from: &Path, to: &Path, kind: EntryKind) -> Result<(), TreeError> {
        match kind {
            EntryKind::File => self.carry_file(from, to),
            EntryKind::Symlink => {
                let target = self.files.read_link(from).map_err(io(from))?;
                self.files.symlink(&target, to).map_err(io(to))
            }
            EntryKind::Dir => {
                self.files.create_dir_all(to).map_err(io(to))?;
                for (name, kind) in self.files.list(from).map_err(io(from))? {
                    self.carry(&from.join(&name), &to.join(&name), kind)?;
                }
                Ok(())
            }
        }
    }

    /// Removes tree directories the `current` link does not point to (left by
    /// a crash before or after a switch) and a stale temporary link. Removes
    /// nothing when `current` points to no directory.
    fn collect_garbage(&self) -> Result<(), TreeError> {
        let current = self.current_dir()?;
        if let Some(dir) = &current {
            if self.files.kind(dir).map_err(io(dir))? != Some(EntryKind::Dir) {
                return Err(TreeError::Inconsistent(Inconsistency::CurrentNotATree {
                    root: self.root.clone(),
                    target: dir.clone(),
                }));
            }
        }
        let trees = self.root.join("trees");
        for (name, kind) in self.files.list(&trees).map_err(io(&trees))? {
            let path = trees.join(name);
            if current.as_deref() == Some(path.as_path()) {
                continue;
            }
            let removed = match kind {
                EntryKind::Dir => self.files.remove_dir_all(&path),
                _ => self.files.remove_file(&path),
            };
            removed.map_err(io(&path))?;
        }
        for name in ["current.new", &format!("{MARKER_FILE}.new")] {
            let tmp = self.root.join(name);
            if self.files.kind(&tmp).map_err(io(&tmp))?.is_some() {
                self.files.remove_file(&tmp).map_err(io(&tmp))?;
            }
        }
        Ok(())
    }

    fn next_number(&self) -> Result<u64, TreeError> {
        let current = self.current_dir()?;
        Ok(current
            .as_ref()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(1, |n| n + 1))
    }

    /// Points `current` to `rel` atomically: a new link renamed over it.
    fn switch_to(&self, rel: &Path) -> Result<(), TreeError> {
        let tmp = self.root.join("current.new");
        if self.files.kind(&tmp).map_err(io(&tmp))?.is_some() {
            self.files.remove_file(&tmp).map_err(io(&tmp))?;
        }
        self.files.symlink(rel, &tmp).map_err(io(&tmp))?;
        self.rename(&tmp, &self.root.join("current"))
    }

    /// [`DeviceTree::apply`], stopping as if the process died at `crash`
    /// (tests of crash safety).
    #[doc(hidden)]
    pub fn apply_crashing_at(
        &mut self,
        change: &TreeChange,
        crash: Option<CrashPoint>,
    ) -> Result<(), TreeError> {
        let mut index = self.index()?;
        let current = self.current_dir()?;
        let number = self.next_number()?;
        let rel = PathBuf::from("trees").join(number.to_string());
        let staging = self.root.join(&rel);
        if self.files.kind(&staging).map_err(io(&staging))?.is_some() {
            self.files.remove_dir_all(&staging).map_err(io(&staging))?;
        }
        // 1. The new generation, written without a sync per file.
        let mo_dir = staging.join("mo");
        self.files.create_dir_all(&mo_dir).map_err(io(&mo_dir))?;
        // Other use cases' files of the current generation, carried over.
        if let Some(dir) = &current {
            for (name, kind) in self.files.list(dir).map_err(io(dir))? {
                if name == "tree.json" || name == "mo" {
                    continue;
                }
                self.carry(&dir.join(&name), &staging.join(&name), kind)?;
            }
        }
        // MOs that stay are carried over, under their visible names (files
        // named by the earlier scheme, `.%2FDMAcc.xml`, get them here); MOs
        // removed or replaced are not.
        for uri in &change.remove {
            index.mos.remove(uri);
        }
        for (uri, entry) in index.mos.iter_mut() {
            if change.put.iter().any(|(u, _, _)| u == uri) {
                continue;
            }
            let Some(dir) = &current else {
                return Err(TreeError::Inconsistent(Inconsistency::NoCurrentTree {
                    uri: uri.clone(),
                }));
            };
            let file = format!("mo/{}", file_name_for(uri));
            self.carry_file(&dir.join(&entry.file), &staging.join(&file))?;
            entry.file = file;
        }
        for (i, (uri, tree, origin)) in change.put.iter().enumerate() {
            let file = format!("mo/{}", file_name_for(uri));
            self.write(&staging.join(&file), tree.to_tnds().as_bytes())?;
            index.mos.insert(
                uri.clone(),
                IndexEntry {
                    file,
                    origin: origin.clone(),
                },
            );
            if i == 0 && crash == Some(CrashPoint::MidStaging) {
                return Err(TreeError::SimulatedCrash(CrashPoint::MidStaging));
            }
        }
        match &change.last_card {
            LastCard::Keep => {}
            LastCard::Set(mark) => index.last_card = Some(mark.clone()),
            LastCard::Clear => index.last_card = None,
        }
        index.schema_version = INDEX_SCHEMA_VERSION;
        let text = serde_json::to_string_pretty(&index).map_err(TreeError::IndexNotWritten)?;
        self.write(&staging.join("tree.json"), text.as_bytes())?;
        if self.regression == Some(Regression::RenameBeforeSync) {
            // The broken order: the switch is made durable before the new
            // generation is.
            self.switch_to(&rel)?;
            self.sync_dir(&self.root)?;
            self.sync_fs(&staging)?;
        } else {
            // 2. One syncfs: every file of the new generation, its
            //    directories and its entry in `trees/` are on the medium.
            self.sync_fs(&staging)?;
            if crash == Some(CrashPoint::BeforeSwitch) {
                return Err(TreeError::SimulatedCrash(CrashPoint::BeforeSwitch));
            }
            // 3. The switch, then DIR synced: the change is durable.
            self.switch_to(&rel)?;
            self.sync_dir(&self.root)?;
        }
        if crash == Some(CrashPoint::AfterSwitch) {
            return Err(TreeError::SimulatedCrash(CrashPoint::AfterSwitch));
        }
        // 4. The old generation goes (a crash before leaves it to the next
        //    open).
        if let Some(old) = current {
            self.files.remove_dir_all(&old).map_err(io(&old))?;
        }
        Ok(())
    }
}

impl DeviceTree for DirectoryTree {
    fn index(&self) -> Result<TreeIndex, TreeError> {
        let Some(dir) = self.current_dir()? else {
            return Ok(TreeIndex::default());
        };
        let path = dir.join("tree.json");
        let bytes = self.files.read(&path).map_err(io(&path))?;
        let text = String::from_utf8(bytes).map_err(|e| TreeError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let index: TreeIndex =
            serde_json::from_str(&text).map_err(|source| TreeError::CorruptIndex {
                path: path.clone(),
                line: source.line(),
                column: source.column(),
                source,
            })?;
        if index.schema_version != INDEX_SCHEMA_VERSION {
            return Err(TreeError::Inconsistent(Inconsistency::SchemaVersion {
                path,
                found: index.schema_version,
                expected: INDEX_SCHEMA_VERSION,
            }));
        }
        Ok(index)
    }

    fn read_mo(&self, uri: &str) -> Result<Option<MgmtTree>, TreeError> {
        let Some(path) = self.mo_path(uri)? else {
            return Ok(None);
        };
        let bytes = self.files.read(&path).map_err(io(&path))?;
        let text = String::from_utf8(bytes).map_err(|e| TreeError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let tree = MgmtTree::from_tnds(&text).map_err(|source| TreeError::Mo {
            path: path.clone(),
            source,
        })?;
        Ok(Some(tree))
    }

    fn apply(&mut self, change: &TreeChange) -> Result<(), TreeError> {
        self.apply_crashing_at(change, None)
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use std::error::Error as _;

    /// The typed causes read as the messages did; a corrupt index keeps
    /// serde_json's error as its source.
    #[test]
    fn typed_causes_read_well_and_keep_their_sources() {
        let e = TreeError::NotATree {
            path: PathBuf::from("/d"),
            reason: NotATree::Missing,
        };
        assert_eq!(
            e.to_string(),
            "/d: no such directory: check the path, or create a device tree there (--init)"
        );
        let e = TreeError::Inconsistent(Inconsistency::SchemaVersion {
            path: PathBuf::from("/d/tree.json"),
            found: 9,
            expected: INDEX_SCHEMA_VERSION,
        });
        assert_eq!(
            e.to_string(),
            format!("/d/tree.json: schema_version 9 is not {INDEX_SCHEMA_VERSION}")
        );
        assert!(e.source().is_some());
        let Err(source) = serde_json::from_str::<TreeIndex>("{\n  \"mos\": 5\n}") else {
            panic!("not an index")
        };
        let e = TreeError::CorruptIndex {
            path: PathBuf::from("/d/tree.json"),
            line: source.line(),
            column: source.column(),
            source,
        };
        assert_eq!(
            e.to_string(),
            "/d/tree.json: line 2, column 10: invalid type: integer `5`, expected a map"
        );
        assert!(e.source().is_some());
    }
}
