//! Enforcing the policy as time passes and the card changes (`dmsc policy
//! enforce --watch`).
//!
//! The loop looks at the card's generation every poll interval and applies
//! the policy again when the card changed (a new policy or new objects), when
//! the instant of the last report's next re-evaluation has come (a decision
//! changes then), and once at the start. The card, the application and the
//! clock are the caller's callbacks, so the loop runs the same on a real card
//! with the real time and in tests with a simulated clock.

use std::ops::ControlFlow;
use std::time::Duration;

use jiff::Timestamp;

/// The shortest poll interval: the card is not asked more than once a second.
pub const MIN_POLL: Duration = Duration::from_secs(1);

/// How long after a re-evaluation instant the policy is applied: the instant
/// must have passed on the clock that decides.
pub const PAST_DUE: Duration = Duration::from_millis(5);

/// The clock a watch reads and waits on.
pub trait WatchClock {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Waits `duration` (less when asked to stop); `Break` ends the watch.
    fn wait(&mut self, duration: Duration) -> ControlFlow<()>;
}

/// How a watch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Between two looks at the card's generation (at least [`MIN_POLL`]).
    pub poll: Duration,
    /// Stop after this many applications.
    pub max_runs: Option<u32>,
}

/// What a watch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchSummary {
    /// How many times the policy was applied.
    pub runs: u32,
}

/// Runs the watch until `clock.wait` says stop or `options.max_runs`
/// applications were made.
///
/// - `generation` looks at the card: its generation counter (an error, e.g.
///   no card, ends the watch with that error);
/// - `apply` applies the policy once and returns the instant at which it must
///   be applied again at the latest (the report's `next_reevaluation`), or
///   `None` (no scheduled change, or the application failed and was reported
///   by the caller: it is tried again when the card changes).
pub fn watch<E>(
    clock: &mut impl WatchClock,
    options: &WatchOptions,
    mut generation: impl FnMut() -> Result<u64, E>,
    mut apply: impl FnMut() -> Option<Timestamp>,
) -> Result<WatchSummary, E> {
    let poll = options.poll.max(MIN_POLL);
    let mut summary = WatchSummary::default();
    let mut last_generation = None;
    let mut due: Option<Timestamp> = None;
    loop {
        let generation = generation()?;
        let now = clock.now();
        let changed = last_generation != Some(generation);
        if changed || due.is_some_and(|d| now >= d) {
            last_generation = Some(generation);
            due = apply();
            summary.runs += 1;
            if options.max_runs.is_some_and(|m| summary.runs >= m) {
                return Ok(summary);
            }
        }
        if clock.wait(next_wait(poll, due, clock.now())).is_break() {
            return Ok(summary);
        }
    }
}

/// Until the next look: the poll interval, or less when the re-evaluation
/// instant comes first (then just past it).
fn next_wait(poll: Duration, due: Option<Timestamp>, now: Timestamp) -> Duration {
    match due {
        Some(d) => {
            let left = Duration::try_from(d.duration_since(now)).unwrap_or(Duration::ZERO);
            poll.min(left + PAST_DUE)
        }
        None => poll,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::{Cell, RefCell};

    use super::*;

    /// A simulated clock: waiting moves it on; it stops after `waits` waits.
    struct TestClock {
        now: Cell<Timestamp>,
        waited: Vec<Duration>,
        waits: usize,
    }

    impl TestClock {
        fn at(second: i64, waits: usize) -> TestClock {
            TestClock {
                now: Cell::new(Timestamp::from_second(second).unwrap()),
                waited: Vec::new(),
                waits,
            }
        }
    }

    impl WatchClock for TestClock {
        fn now(&self) -> Timestamp {
            self.now.get()
        }
        fn wait(&mut self, duration: Duration) -> ControlFlow<()> {
            if self.waited.len() == self.waits {
                return ControlFlow::Break(());
            }
            self.waited.push(duration);
            self.now.set(self.now.get() + duration);
            ControlFlow::Continue(())
        }
    }

    fn ts(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    const POLL: WatchOptions = WatchOptions {
        poll: Duration::from_secs(2),
        max_runs: None,
    };

    #[test]
    fn applies_once_at_start_then_only_when_the_card_changes() {
        let mut clock = TestClock::at(1_000, 5);
        let generations = RefCell::new(vec![7, 7, 8, 8, 8, 8].into_iter());
        let summary = watch(
            &mut clock,
            &POLL,
            || Ok::<_, ()>(generations.borrow_mut().next().unwrap()),
            || None,
        )
        .unwrap();
        // At the start (generation 7), and at the third look (8).
        assert_eq!(summary.runs, 2);
        assert_eq!(clock.waited, vec![Duration::from_secs(2); 5]);
    }

    #[test]
    fn applies_again_just_after_the_next_reevaluation() {
        let mut clock = TestClock::at(1_000, 4);
        let mut runs = 0;
        let summary = watch(
            &mut clock,
            &WatchOptions {
                poll: Duration::from_secs(60),
                max_runs: None,
            },
            || Ok::<_, ()>(1),
            || {
                runs += 1;
                Some(ts(1_000 + 10 * runs))
            },
        )
        .unwrap();
        // Applied at 1000 (next at 1010): waits 10 s + 5 ms, not the poll
        // interval, and applies again (next at 1020), and so on.
        assert_eq!(clock.waited[0], Duration::from_secs(10) + PAST_DUE);
        assert_eq!(clock.waited[1..], [Duration::from_secs(10); 3]);
        assert_eq!(summary.runs, 5);
    }

    #[test]
    fn a_past_due_instant_is_applied_at_the_next_look() {
        let mut clock = TestClock::at(1_000, 1);
        let mut runs = 0;
        watch(
            &mut clock,
            &POLL,
            || Ok::<_, ()>(1),
            || {
                runs += 1;
                Some(ts(900))
            },
        )
        .unwrap();
        // The instant has passed: the wait is only PAST_DUE, then it applies again.
        assert_eq!(clock.waited, vec![PAST_DUE]);
        assert_eq!(runs, 2);
    }

    #[test]
    fn max_runs_and_the_minimum_poll() {
        let mut clock = TestClock::at(0, 100);
        let mut g = 0u64;
        let summary = watch(
            &mut clock,
            &WatchOptions {
                poll: Duration::ZERO,
                max_runs: Some(3),
            },
            || {
                g += 1;
                Ok::<_, ()>(g)
            },
            || None,
        )
        .unwrap();
        assert_eq!(summary.runs, 3);
        assert_eq!(clock.waited, vec![MIN_POLL; 2]);
    }

    #[test]
    fn a_card_error_ends_the_watch_with_it() {
        let mut clock = TestClock::at(0, 10);
        let mut looks = 0;
        let result = watch(
            &mut clock,
            &POLL,
            || {
                looks += 1;
                if looks == 3 {
                    Err("card removed")
                } else {
                    Ok(1)
                }
            },
            || None,
        );
        assert_eq!(result, Err("card removed"));
        assert_eq!(clock.waited.len(), 2);
    }
}
