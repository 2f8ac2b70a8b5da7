//! The PIN and PUK try counters are decremented durably *before* the reference
//! data is compared. A store wrapper cuts the power right after the first commit
//! of VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER sent with the
//! *right* PIN/PUK: the recovered card must show the decremented counter. An
//! applet that compared first (and wrote the decrement only after a mismatch)
//! would commit nothing, or the reset counter, first, and fail here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use dmsc_card_model::commands::*;
use dmsc_sim_card::store::{PersistentMemory, Records, StoreError};
use dmsc_sim_card::{Card, MemoryStore};

/// Loses power right after the first completed commit.
struct CutAfterFirstCommit<'a> {
    inner: &'a mut MemoryStore,
    lost: bool,
    /// Self-test variant: the first commit is dropped, as by an applet that
    /// compares first and skips the decrement on a match.
    compare_first: bool,
}

impl PersistentMemory for CutAfterFirstCommit<'_> {
    fn load(&mut self) -> Result<Records, StoreError> {
        self.inner.load()
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        if self.lost {
            return Err(StoreError::PowerLost);
        }
        self.inner.begin()
    }
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if self.lost {
            return Err(StoreError::PowerLost);
        }
        self.inner.write(key, value)
    }
    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if self.lost {
            return Err(StoreError::PowerLost);
        }
        self.inner.remove(key)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        if self.lost {
            return Err(StoreError::PowerLost);
        }
        if self.compare_first {
            self.compare_first = false;
            self.inner.abort();
            return Ok(());
        }
        self.inner.commit()?;
        self.lost = true;
        Err(StoreError::PowerLost)
    }
    fn abort(&mut self) {
        self.inner.abort()
    }
}

fn pin(s: &str) -> Pin {
    Pin::new(s.as_bytes()).unwrap()
}

/// Sends `req` (after SELECT) with a cut after its first commit; returns the
/// (PIN, PUK) tries before and after recovery.
fn cut_after_first_commit_of(req: &Request, compare_first: bool) -> ((u8, u8), (u8, u8)) {
    let mut store = MemoryStore::new();
    drop(Card::initialize(&mut store, rng(3), init_params()).unwrap());
    let before = Card::power_up(&mut store, rng(4)).unwrap().pin_tries();
    {
        let mut card = Card::power_up(
            CutAfterFirstCommit {
                inner: &mut store,
                lost: false,
                compare_first,
            },
            rng(4),
        )
        .unwrap();
        let select = Request::Select { aid: AID.to_vec() };
        let _ = card.process(&select.to_command().to_bytes().unwrap());
        let _ = card.process(&req.to_command().to_bytes().unwrap());
    }
    let after = Card::power_up(&mut store, rng(5)).unwrap().pin_tries();
    (before, after)
}

fn cut_after_first_commit(req: &Request) -> ((u8, u8), (u8, u8)) {
    cut_after_first_commit_of(req, false)
}

/// Self-test: with the decrement commit missing (compare-first ordering), the
/// checks above would fail for each of the three commands.
#[test]
fn compare_first_ordering_is_caught() {
    let verify = Request::Verify {
        reference: PIN_REF_USER,
        pin: Some(pin("123456")),
    };
    let change = Request::ChangePin {
        old: pin("123456"),
        new: pin("24682468"),
    };
    let reset = Request::ResetRetryCounter {
        puk: pin("12345678"),
        new: pin("123456"),
    };
    for (req, puk) in [(verify, false), (change, false), (reset, true)] {
        let (before, after) = cut_after_first_commit_of(&req, true);
        let decremented = if puk {
            after.1 + 1 == before.1
        } else {
            after.0 + 1 == before.0
        };
        assert!(
            !decremented,
            "compare-first not caught: {before:?} -> {after:?}"
        );
    }
}

#[test]
fn verify_decrement_is_durable_before_compare() {
    let (before, after) = cut_after_first_commit(&Request::Verify {
        reference: PIN_REF_USER,
        pin: Some(pin("123456")),
    });
    assert_eq!(
        after.0 + 1,
        before.0,
        "VERIFY: PIN tries {before:?} -> {after:?}"
    );
}

#[test]
fn change_reference_data_decrement_is_durable_before_compare() {
    let (before, after) = cut_after_first_commit(&Request::ChangePin {
        old: pin("123456"),
        new: pin("24682468"),
    });
    assert_eq!(
        after.0 + 1,
        before.0,
        "CHANGE REFERENCE DATA: PIN tries {before:?} -> {after:?}"
    );
}

#[test]
fn reset_retry_counter_decrement_is_durable_before_compare() {
    let (before, after) = cut_after_first_commit(&Request::ResetRetryCounter {
        puk: pin("12345678"),
        new: pin("123456"),
    });
    assert_eq!(
        after.1 + 1,
        before.1,
        "RESET RETRY COUNTER: PUK tries {before:?} -> {after:?}"
    );
}
