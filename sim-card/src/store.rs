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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Power was lost (fault injection): the card is mute until powered up again.
    PowerLost,
    /// The stored state is unreadable; the text names the file and the defect.
    Corrupt(String),
    /// An operating-system I/O error; the text names the file and the operation.
    Io(String),
    /// Another process (or another handle) holds the card state: its
    /// exclusive lock is taken. The text names the file.
    InUse(String),
    /// The state file was replaced, renamed, removed or given a second name
    /// (hard link) under the running card; nothing was written and the
    /// committed state in memory is unchanged. The text names the file and
    /// what was found.
    Replaced(String),
    /// A call out of order, such as `write` outside a transaction.
    Misuse(&'static str),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::PowerLost => f.write_str("power lost during a persistent write"),
            StoreError::Corrupt(s) => write!(f, "card state is corrupt: {s}"),
            StoreError::Io(s) => write!(f, "card state I/O error: {s}"),
            StoreError::InUse(s) => write!(f, "card state in use: {s}"),
            StoreError::Replaced(s) => write!(f, "card state file replaced: {s}"),
            StoreError::Misuse(s) => write!(f, "store misuse: {s}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StoreError {}

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
