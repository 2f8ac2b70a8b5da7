//! Fault injection: a [`PersistentMemory`] wrapper that cuts the power after
//! a chosen number of persistent writes.
//!
//! A *persistent write* is every successful call of
//! [`write`](PersistentMemory::write), [`remove`](PersistentMemory::remove) or
//! [`commit`](PersistentMemory::commit); `load`, `begin` and `abort` are not
//! counted, nor are calls the inner store rejects. A crash campaign first runs
//! a scenario with no cut to learn how many writes it makes
//! ([`FaultyStore::writes`]), then re-runs it once for every `N` in
//! `1..=writes`, each time with power cut right after the `N`-th write, and
//! checks that the recovered state is that of the last completed commit.
//!
//! This module only uses `core` and `alloc`.

use crate::store::{PersistentMemory, Records, StoreError};

/// Wraps a store and loses power right after its `N`-th persistent write.
///
/// When the cut happens, the call that triggered it has taken effect in the
/// inner store but still returns [`StoreError::PowerLost`] (after a commit the
/// transaction is durable, yet the card never learns it completed), the inner
/// store's open transaction is aborted, and every later call returns
/// `PowerLost` without touching the inner store. Recover with
/// [`into_inner`](FaultyStore::into_inner): its `load` then shows only
/// committed data.
#[derive(Debug, Clone)]
pub struct FaultyStore<S: PersistentMemory> {
    inner: S,
    cut_after: Option<u64>,
    writes: u64,
    lost: bool,
}

impl<S: PersistentMemory> FaultyStore<S> {
    /// Wraps `inner`. With `cut_after: Some(n)` power is cut right after the
    /// `n`-th persistent write (`Some(0)`: at the first persistent write,
    /// before it reaches the inner store); with `None` it is never cut.
    pub fn new(inner: S, cut_after: Option<u64>) -> Self {
        Self {
            inner,
            cut_after,
            writes: 0,
            lost: false,
        }
    }

    /// How many persistent writes have taken effect so far (the one that
    /// triggered the cut included).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// The configured cut point.
    pub fn cut_after(&self) -> Option<u64> {
        self.cut_after
    }

    /// Whether the power has been cut.
    pub fn has_lost_power(&self) -> bool {
        self.lost
    }

    /// The inner store (read-only: inspecting it does not count as a write).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner store, as at the next power-up.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn powered(&self) -> Result<(), StoreError> {
        if self.lost {
            Err(StoreError::PowerLost)
        } else {
            Ok(())
        }
    }

    fn cut(&mut self) -> StoreError {
        self.lost = true;
        self.inner.abort();
        StoreError::PowerLost
    }

    /// Runs one persistent write, counting it and cutting the power after it
    /// when its number is the cut point.
    fn persistent(
        &mut self,
        op: impl FnOnce(&mut S) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.powered()?;
        if self.cut_after == Some(self.writes) {
            // Only reachable with `Some(0)`: later cut points fire below.
            return Err(self.cut());
        }
        op(&mut self.inner)?;
        self.writes += 1;
        if self.cut_after == Some(self.writes) {
            return Err(self.cut());
        }
        Ok(())
    }
}

impl<S: PersistentMemory> PersistentMemory for FaultyStore<S> {
    fn load(&mut self) -> Result<Records, StoreError> {
        self.powered()?;
        self.inner.load()
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.powered()?;
        self.inner.begin()
    }

    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.persistent(|s| s.write(key, value))
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.persistent(|s| s.remove(key))
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.persistent(|s| s.commit())
    }

    fn abort(&mut self) {
        if !self.lost {
            self.inner.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use alloc::vec;
    use alloc::vec::Vec;

    /// One step of a scenario.
    #[derive(Clone, Copy)]
    enum Op {
        Begin,
        Write(&'static [u8], &'static [u8]),
        Remove(&'static [u8]),
        Commit,
        Abort,
    }
    use Op::*;

    /// Several transactions: overwrites, removals (also of absent keys), an
    /// aborted transaction and an empty one.
    const SCENARIO: &[Op] = &[
        Begin,
        Write(b"meta", b"v1"),
        Write(b"obj/a", b"alpha"),
        Commit,
        Begin,
        Write(b"obj/a", b"ALPHA"),
        Remove(b"meta"),
        Write(b"obj/b", b""),
        Commit,
        Begin,
        Write(b"obj/c", b"aborted"),
        Remove(b"obj/a"),
        Abort,
        Begin,
        Commit,
        Begin,
        Remove(b"obj/a"),
        Remove(b"nothing"),
        Write(b"obj/b", b"beta"),
        Write(b"meta", b"v2"),
        Commit,
    ];

    /// Runs the scenario, stopping at the first error.
    fn run(store: &mut impl PersistentMemory) -> Result<(), StoreError> {
        for op in SCENARIO {
            match *op {
                Begin => store.begin()?,
                Write(k, v) => store.write(k, v)?,
                Remove(k) => store.remove(k)?,
                Commit => store.commit()?,
                Abort => store.abort(),
            }
        }
        Ok(())
    }

    /// For every persistent write (1-based, in order): the committed state
    /// before its transaction and the state after that transaction commits.
    fn oracle() -> Vec<(Records, Records, bool)> {
        let mut committed = Records::new();
        let mut pending: Vec<Op> = Vec::new();
        let mut writes: Vec<(usize, bool)> = Vec::new(); // (transaction index, is commit)
        let mut after_tx: Vec<Records> = Vec::new(); // committed state before transaction i
        let mut tx = 0;
        after_tx.push(committed.clone());
        for op in SCENARIO {
            match *op {
                Begin => pending.clear(),
                Write(..) | Remove(..) => {
                    pending.push(*op);
                    writes.push((tx, false));
                }
                Commit => {
                    writes.push((tx, true));
                    for p in pending.drain(..) {
                        match p {
                            Write(k, v) => {
                                committed.insert(k.to_vec(), v.to_vec());
                            }
                            Remove(k) => {
                                committed.remove(k);
                            }
                            _ => unreachable!(),
                        }
                    }
                    tx += 1;
                    after_tx.push(committed.clone());
                }
                Abort => {
                    pending.clear();
                    tx += 1;
                    after_tx.push(committed.clone());
                }
            }
        }
        writes
            .into_iter()
            .map(|(t, is_commit)| (after_tx[t].clone(), after_tx[t + 1].clone(), is_commit))
            .collect()
    }

    #[test]
    fn counts_writes_exactly_without_a_cut() {
        let mut store = FaultyStore::new(MemoryStore::new(), None);
        run(&mut store).unwrap();
        let expected = SCENARIO
            .iter()
            .filter(|op| matches!(op, Write(..) | Remove(..) | Commit))
            .count() as u64;
        assert_eq!(store.writes(), expected);
        assert_eq!(store.writes(), 15);
        assert!(!store.has_lost_power());
        let inner = store.into_inner();
        assert_eq!(inner.commits(), 4);
        assert_eq!(Some(inner.records()), oracle().last().map(|o| &o.1));
    }

    #[test]
    fn rejected_calls_are_not_counted() {
        let mut store = FaultyStore::new(MemoryStore::new(), Some(1));
        assert!(matches!(
            store.write(b"k", b"v"),
            Err(StoreError::Misuse(_))
        ));
        assert!(matches!(store.remove(b"k"), Err(StoreError::Misuse(_))));
        assert!(matches!(store.commit(), Err(StoreError::Misuse(_))));
        assert_eq!(store.writes(), 0);
        assert!(!store.has_lost_power());
        store.begin().unwrap();
        assert_eq!(store.write(b"k", b"v"), Err(StoreError::PowerLost));
        assert_eq!(store.writes(), 1);
    }

    #[test]
    fn every_cut_point_recovers_the_state_before_or_after_the_transaction() {
        let mut counting = FaultyStore::new(MemoryStore::new(), None);
        run(&mut counting).unwrap();
        let total = counting.writes();
        let oracle = oracle();
        assert_eq!(oracle.len() as u64, total);

        for n in 1..=total {
            let mut store = FaultyStore::new(MemoryStore::new(), Some(n));
            assert_eq!(run(&mut store), Err(StoreError::PowerLost), "cut {n}");
            assert!(store.has_lost_power());
            assert_eq!(store.writes(), n, "cut {n}");

            let (before, after, is_commit) = &oracle[(n - 1) as usize];
            let mut inner = store.into_inner();
            let recovered = inner.load().unwrap();
            assert!(
                recovered == *before || recovered == *after,
                "cut {n}: neither before nor after"
            );
            // Exactly: a cut after a commit keeps it, any other cut loses the
            // open transaction.
            let expected = if *is_commit { after } else { before };
            assert_eq!(&recovered, expected, "cut {n}");
            // The open transaction was aborted: the recovered store works.
            inner.begin().unwrap();
            inner.write(b"post", b"cut").unwrap();
            inner.commit().unwrap();
        }
    }

    #[test]
    fn a_cut_after_the_last_write_or_beyond_is_harmless() {
        let mut store = FaultyStore::new(MemoryStore::new(), Some(16));
        run(&mut store).unwrap();
        assert!(!store.has_lost_power());
        assert_eq!(store.writes(), 15);

        let mut store = FaultyStore::new(MemoryStore::new(), Some(15));
        assert_eq!(run(&mut store), Err(StoreError::PowerLost));
        // The last commit took effect although the card was told PowerLost.
        assert_eq!(store.into_inner().commits(), 4);
    }

    #[test]
    fn cut_at_zero_blocks_the_first_write() {
        let mut store = FaultyStore::new(MemoryStore::new(), Some(0));
        assert_eq!(store.load(), Ok(Records::new()));
        store.begin().unwrap();
        assert_eq!(store.write(b"k", b"v"), Err(StoreError::PowerLost));
        assert_eq!(store.writes(), 0);
        assert!(store.has_lost_power());
        let mut inner = store.into_inner();
        assert_eq!(inner.load(), Ok(Records::new()));
        inner.begin().unwrap(); // the transaction was aborted
    }

    #[test]
    fn after_the_cut_every_call_fails_without_touching_the_inner_store() {
        let mut store = FaultyStore::new(MemoryStore::new(), Some(2));
        store.begin().unwrap();
        store.write(b"a", b"1").unwrap();
        assert_eq!(store.commit(), Err(StoreError::PowerLost));
        let committed = store.inner().records().clone();
        assert_eq!(committed.get(&b"a"[..]), Some(&vec![b'1']));

        assert_eq!(store.load(), Err(StoreError::PowerLost));
        assert_eq!(store.begin(), Err(StoreError::PowerLost));
        assert_eq!(store.write(b"b", b"2"), Err(StoreError::PowerLost));
        assert_eq!(store.remove(b"a"), Err(StoreError::PowerLost));
        assert_eq!(store.commit(), Err(StoreError::PowerLost));
        store.abort();
        assert_eq!(store.writes(), 2);
        let inner = store.into_inner();
        assert_eq!(inner.records(), &committed);
        assert_eq!(inner.commits(), 1);
    }

    #[test]
    fn wraps_a_mutable_reference() {
        let mut memory = MemoryStore::new();
        {
            let mut store = FaultyStore::new(&mut memory, Some(2));
            store.begin().unwrap();
            store.write(b"a", b"1").unwrap();
            assert_eq!(store.write(b"b", b"2"), Err(StoreError::PowerLost));
        }
        assert!(memory.records().is_empty());
        memory.begin().unwrap();
    }
}
