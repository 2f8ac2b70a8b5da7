//! The enforcement engine: [`evaluate`] decides every managed resource at
//! one instant; [`next_change`] says when the state of a resource changes
//! next, [`next_reevaluation`] when any decision (state or what decided it)
//! does.
//!
//! Precedence, per resource (`docs/policy.md`):
//! 1. an administrator's command in force (the highest counter wins);
//! 2. the matching rules: the highest `priority` wins; at equal priority
//!    `disable` wins; at equal priority and effect the first rule in the file;
//! 3. the resource's default.

use std::collections::BTreeSet;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Serialize;

use super::format::{weekday_index, Policy, Rule, State, WhenUnknown, Window};
use super::geo::Position;

/// How far [`next_change`] looks ahead, in days.
pub const HORIZON_DAYS: i32 = 1100;

/// An administrator's command in force on the device (checked and recorded
/// in [`crate::policy::device`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Override {
    /// The resource.
    pub resource: String,
    /// Enable or disable.
    pub state: State,
    /// In force until this instant (exclusive); `None`: until the policy changes.
    pub until: Option<Timestamp>,
    /// The command's counter (higher is newer).
    pub counter: u64,
}

impl<'de> serde::Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<State, D::Error> {
        let s = String::deserialize(d)?;
        State::parse(&s).ok_or_else(|| serde::de::Error::custom("expected enabled or disabled"))
    }
}

/// What the device knows when it decides.
#[derive(Debug, Clone)]
pub struct Context {
    /// Now.
    pub time: Timestamp,
    /// Where the device is, if known.
    pub location: Option<Position>,
    /// The network it is on (e.g. an SSID), if known.
    pub network: Option<String>,
    /// Administrators' commands recorded on the device.
    pub overrides: Vec<Override>,
}

impl Context {
    /// A context at `time`, with no location, network or commands.
    pub fn at(time: Timestamp) -> Context {
        Context {
            time,
            location: None,
            network: None,
            overrides: Vec::new(),
        }
    }

    /// The same context at another instant.
    pub fn with_time(&self, time: Timestamp) -> Context {
        Context {
            time,
            ..self.clone()
        }
    }
}

/// What decided a resource's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "lowercase")]
pub enum DecidedBy {
    /// No rule applied: the resource's default.
    Default,
    /// This rule.
    Rule {
        /// Its id.
        id: String,
        /// Its priority.
        priority: i64,
    },
    /// An administrator's command.
    Command {
        /// Its counter.
        counter: u64,
        /// Until when it is in force.
        until: Option<Timestamp>,
    },
}

impl std::fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecidedBy::Default => f.write_str("default"),
            DecidedBy::Rule { id, priority } => write!(f, "rule {id} (priority {priority})"),
            DecidedBy::Command {
                counter,
                until: Some(u),
            } => write!(f, "command #{counter} until {u}"),
            DecidedBy::Command {
                counter,
                until: None,
            } => write!(f, "command #{counter}"),
        }
    }
}

/// The decision for one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The resource.
    pub resource: String,
    /// Its state.
    pub state: State,
    /// What decided it.
    pub decided_by: DecidedBy,
}

/// The start and end instants of `w`'s occurrence that starts on local date `d`.
fn occurrence(w: &Window, d: Date) -> Option<(Timestamp, Timestamp)> {
    if !w.days[weekday_index(d.weekday())] {
        return None;
    }
    if let Some((a, b)) = w.dates {
        if d < a || d > b {
            return None;
        }
    }
    let at = |date: Date, minutes: u16| -> Option<Timestamp> {
        let (date, minutes) = if minutes == 1440 {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, minutes)
        };
        let dt = date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
        // Compatible disambiguation: a time in a spring-forward gap moves
        // forward by the gap; an ambiguous (fall-back) time is the earlier.
        w.tz.to_ambiguous_timestamp(dt).compatible().ok()
    };
    let start = at(d, w.from)?;
    let end = if w.to > w.from {
        at(d, w.to)?
    } else {
        at(d.tomorrow().ok()?, w.to)?
    };
    (start < end).then_some((start, end))
}

fn window_active(w: &Window, t: Timestamp) -> bool {
    let today = t.to_zoned(w.tz.clone()).date();
    (-2..=0).any(|k| {
        today
            .checked_add(k.days())
            .ok()
            .and_then(|d| occurrence(w, d))
            .is_some_and(|(s, e)| s <= t && t < e)
    })
}

fn rule_applies(policy: &Policy, rule: &Rule, ctx: &Context) -> bool {
    if let Some(w) = &rule.window {
        if !window_active(w, ctx.time) {
            return false;
        }
    }
    if !rule.inside.is_empty() || !rule.outside.is_empty() {
        let ok = match &ctx.location {
            None => rule.when_unknown == WhenUnknown::Apply,
            Some(p) => {
                let contains =
                    |name: &String| policy.sites.get(name).is_some_and(|s| s.contains(p));
                (rule.inside.is_empty() || rule.inside.iter().any(contains))
                    && !rule.outside.iter().any(contains)
            }
        };
        if !ok {
            return false;
        }
    }
    if !rule.networks.is_empty() {
        let ok = match &ctx.network {
            None => rule.when_unknown == WhenUnknown::Apply,
            Some(n) => rule.networks.contains(n),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Decides every resource the policy manages, in resource order.
pub fn evaluate(policy: &Policy, ctx: &Context) -> Vec<Decision> {
    let applying: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| rule_applies(policy, r, ctx))
        .collect();
    policy
        .resources
        .iter()
        .map(|res| {
            let command = ctx
                .overrides
                .iter()
                .filter(|o| &o.resource == res && o.until.is_none_or(|u| ctx.time < u))
                .max_by_key(|o| o.counter);
            if let Some(o) = command {
                return Decision {
                    resource: res.clone(),
                    state: o.state,
                    decided_by: DecidedBy::Command {
                        counter: o.counter,
                        until: o.until,
                    },
                };
            }
            let mut best: Option<&Rule> = None;
            for r in applying.iter().filter(|r| r.resources.contains(res)) {
                let key = |r: &Rule| (r.priority, r.effect == State::Disabled);
                if best.is_none_or(|b| key(r) > key(b)) {
                    best = Some(r);
                }
            }
            match best {
                Some(r) => Decision {
                    resource: res.clone(),
                    state: r.effect,
                    decided_by: DecidedBy::Rule {
                        id: r.id.clone(),
                        priority: r.priority,
                    },
                },
                None => Decision {
                    resource: res.clone(),
                    state: policy.defaults.get(res).copied().unwrap_or(State::Enabled),
                    decided_by: DecidedBy::Default,
                },
            }
        })
        .collect()
}

fn states(policy: &Policy, ctx: &Context) -> Vec<State> {
    evaluate(policy, ctx).into_iter().map(|d| d.state).collect()
}

/// The next instant after `ctx.time` at which the state of any managed
/// resource changes, location and network staying as they are; `None` if
/// none does within [`HORIZON_DAYS`] (and no command expires later).
///
/// An instant where only what decides a resource changes (a command expiring
/// over a rule with the same effect) is not a change of state: see
/// [`next_reevaluation`] for those.
pub fn next_change(policy: &Policy, ctx: &Context) -> Option<Timestamp> {
    let now = states(policy, ctx);
    next_instant(policy, ctx, |c| states(policy, c) != now)
}

/// The next instant after `ctx.time` at which any decision changes: the
/// state of a resource **or what decided it** (`decided_by`). This includes
/// every [`next_change`] instant, and also a command expiring over a rule
/// that says the same, or a rule taking over from the default with the same
/// effect. An enforcement watch re-applies at this instant, so that the
/// report it writes never names a rule or command no longer in force.
pub fn next_reevaluation(policy: &Policy, ctx: &Context) -> Option<Timestamp> {
    let now = evaluate(policy, ctx);
    next_instant(policy, ctx, |c| evaluate(policy, c) != now)
}

/// The first candidate instant after `ctx.time` (a command's expiry, a
/// window's start or end) at which `differs` holds.
fn next_instant(
    policy: &Policy,
    ctx: &Context,
    differs: impl Fn(&Context) -> bool,
) -> Option<Timestamp> {
    let t = ctx.time;
    let mut candidates: BTreeSet<Timestamp> = ctx
        .overrides
        .iter()
        .filter_map(|o| o.until)
        .filter(|u| *u > t)
        .collect();
    let windows: Vec<&Window> = policy
        .rules
        .iter()
        .filter_map(|r| r.window.as_ref())
        .collect();
    let utc_today = t.to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut next_day = utc_today.checked_sub(3.days()).ok()?;
    let last_day = utc_today.checked_add(HORIZON_DAYS.days()).ok()?;
    loop {
        let exhausted = next_day > last_day;
        if !exhausted {
            for _ in 0..7 {
                for w in &windows {
                    if let Some((s, e)) = occurrence(w, next_day) {
                        candidates.extend([s, e].into_iter().filter(|x| *x > t));
                    }
                }
                next_day = next_day.tomorrow().ok()?;
            }
        }
        // Occurrences of later local dates start at or after that date's
        // midnight in their zone: no earlier than 26 hours before UTC midnight.
        let bound = next_day
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .checked_sub(SignedDuration::from_hours(27))
            .ok()?;
        while let Some(&c) = candidates.first() {
            if c >= bound && !exhausted {
                break;
            }
            candidates.pop_first();
            if differs(&ctx.with_time(c)) {
                return Some(c);
            }
        }
        if exhausted {
            return None;
        }
    }
}

/// A stretch of time with constant decisions.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    /// Start (inclusive).
    pub from: Timestamp,
    /// End (exclusive).
    pub to: Timestamp,
    /// The decisions in force.
    pub decisions: Vec<Decision>,
}

/// The decisions from `from` to `to`, as stretches of constant state.
pub fn timeline(policy: &Policy, ctx: &Context, from: Timestamp, to: Timestamp) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let c = ctx.with_time(t);
        let decisions = evaluate(policy, &c);
        let end = next_change(policy, &c).map_or(to, |n| n.min(to));
        out.push(Segment {
            from: t,
            to: end,
            decisions,
        });
        t = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::format::Policy;
    use proptest::prelude::*;

    fn policy(body: &str) -> Policy {
        let text = format!(
            "format = \"dmsc-policy\"\nversion = 1\nname = \"t\"\ntimezone = \"Europe/Paris\"\n{body}"
        );
        match Policy::parse(&text) {
            Ok(p) => p,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn state(p: &Policy, ctx: &Context, res: &str) -> State {
        evaluate(p, ctx)
            .into_iter()
            .find(|d| d.resource == res)
            .unwrap()
            .state
    }

    fn at(p: &Policy, t: &str, res: &str) -> State {
        state(p, &Context::at(ts(t)), res)
    }

    const WORK: &str = r#"
[[rules]]
id = "work"
effect = "disable"
resources = ["camera"]
days = ["mon-fri"]
from = "08:00"
to = "18:00"
"#;

    #[test]
    fn working_hours() {
        let p = policy(WORK);
        // Monday 2026-11-23, Paris is UTC+1.
        assert_eq!(at(&p, "2026-11-23T06:59:59Z", "camera"), State::Enabled);
        assert_eq!(at(&p, "2026-11-23T07:00:00Z", "camera"), State::Disabled);
        assert_eq!(at(&p, "2026-11-23T16:59:59Z", "camera"), State::Disabled);
        assert_eq!(at(&p, "2026-11-23T17:00:00Z", "camera"), State::Enabled);
        // Saturday.
        assert_eq!(at(&p, "2026-11-28T10:00:00Z", "camera"), State::Enabled);
        let ctx = Context::at(ts("2026-11-23T10:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-23T17:00:00Z")));
        // Friday evening: the next change is Monday morning.
        let ctx = Context::at(ts("2026-11-27T18:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-30T07:00:00Z")));
    }

    #[test]
    fn dst_spring_forward_and_fall_back() {
        let p = policy(WORK);
        // 2026-03-27 (Fri) Paris is UTC+1; 2026-03-30 (Mon) UTC+2 (the change is Sun 29 March).
        assert_eq!(at(&p, "2026-03-27T07:00:00Z", "camera"), State::Disabled);
        assert_eq!(at(&p, "2026-03-30T06:00:00Z", "camera"), State::Disabled);
        assert_eq!(at(&p, "2026-03-30T05:59:59Z", "camera"), State::Enabled);
        let ctx = Context::at(ts("2026-03-27T18:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-03-30T06:00:00Z")));
        // Back to UTC+1 on Sun 25 October 2026.
        let ctx = Context::at(ts("2026-10-23T17:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-10-26T07:00:00Z")));

        // A night window across the changes: 01:00-04:00 every day.
        let p = policy(
            "[[rules]]\nid = \"night\"\neffect = \"disable\"\nresources = [\"wifi\"]\nfrom = \"01:00\"\nto = \"04:00\"\n",
        );
        // Spring: 01:00 CET = 00:00Z; 04:00 CEST = 02:00Z: two real hours.
        let ctx = Context::at(ts("2026-03-28T23:30:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-03-29T00:00:00Z")));
        let ctx = ctx.with_time(ts("2026-03-29T00:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-03-29T02:00:00Z")));
        // Autumn: 01:00 CEST = 23:00Z; 04:00 CET = 03:00Z: four real hours.
        let ctx = Context::at(ts("2026-10-24T23:00:00Z"));
        assert_eq!(state(&p, &ctx, "wifi"), State::Disabled);
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-10-25T03:00:00Z")));

        // A window starting inside the spring gap (02:30 does not exist) moves
        // forward to 03:30 CEST = 01:30Z.
        let p = policy(
            "[[rules]]\nid = \"gap\"\neffect = \"disable\"\nresources = [\"usb\"]\nfrom = \"02:30\"\nto = \"05:00\"\n",
        );
        let ctx = Context::at(ts("2026-03-29T00:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-03-29T01:30:00Z")));
        assert_eq!(at(&p, "2026-03-29T01:29:59Z", "usb"), State::Enabled);
        // The ambiguous 02:30 in autumn is the first (CEST) one = 00:30Z.
        let ctx = Context::at(ts("2026-10-25T00:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-10-25T00:30:00Z")));
    }

    #[test]
    fn window_crossing_midnight() {
        let p = policy(
            "[[rules]]\nid = \"night\"\neffect = \"disable\"\nresources = [\"bluetooth\"]\ndays = [\"fri\"]\nfrom = \"22:00\"\nto = \"06:00\"\n",
        );
        // Friday 2026-11-27 22:00 Paris = 21:00Z until Saturday 06:00 = 05:00Z.
        assert_eq!(at(&p, "2026-11-27T20:59:59Z", "bluetooth"), State::Enabled);
        assert_eq!(at(&p, "2026-11-27T21:00:00Z", "bluetooth"), State::Disabled);
        assert_eq!(at(&p, "2026-11-28T04:59:59Z", "bluetooth"), State::Disabled);
        assert_eq!(at(&p, "2026-11-28T05:00:00Z", "bluetooth"), State::Enabled);
        // Saturday night is not a Friday window.
        assert_eq!(at(&p, "2026-11-28T22:00:00Z", "bluetooth"), State::Enabled);
        let ctx = Context::at(ts("2026-11-28T01:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-28T05:00:00Z")));
    }

    #[test]
    fn overlapping_rules_precedence() {
        let p = policy(
            r#"
[[rules]]
id = "day-on"
effect = "enable"
resources = ["camera"]
from = "09:00"
to = "17:00"

[[rules]]
id = "midday-off"
effect = "disable"
resources = ["camera"]
from = "12:00"
to = "14:00"

[[rules]]
id = "boss"
effect = "enable"
priority = 5
resources = ["camera"]
from = "13:00"
to = "13:30"
"#,
        );
        let d = |t: &str| {
            evaluate(&p, &Context::at(ts(t)))
                .into_iter()
                .find(|d| d.resource == "camera")
                .unwrap()
        };
        assert_eq!(
            d("2026-11-23T09:00:00Z").decided_by,
            DecidedBy::Rule {
                id: "day-on".into(),
                priority: 0
            }
        );
        // Equal priority: disable wins.
        let x = d("2026-11-23T11:30:00Z");
        assert_eq!(
            (x.state, x.decided_by),
            (
                State::Disabled,
                DecidedBy::Rule {
                    id: "midday-off".into(),
                    priority: 0
                }
            )
        );
        // Higher priority wins over disable.
        let x = d("2026-11-23T12:10:00Z");
        assert_eq!(
            (x.state, x.decided_by),
            (
                State::Enabled,
                DecidedBy::Rule {
                    id: "boss".into(),
                    priority: 5
                }
            )
        );
        assert_eq!(d("2026-11-23T20:00:00Z").decided_by, DecidedBy::Default);
        // Enable (day-on) → disable at 11:00Z: the change is seen.
        let ctx = Context::at(ts("2026-11-23T09:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-23T11:00:00Z")));
        // The boss window ends at 12:30Z: disabled again.
        let ctx = Context::at(ts("2026-11-23T12:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-23T12:30:00Z")));
        // From 13:00Z day-on enables; its end at 16:00Z gives the default,
        // also enabled: not a change. The next one is the next midday.
        let ctx = Context::at(ts("2026-11-23T13:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-24T11:00:00Z")));
    }

    const SITES: &str = r#"
[sites.lab]
polygon = [[48.0, 2.0], [48.0, 2.1], [48.1, 2.1], [48.1, 2.0]]

[[rules]]
id = "lab-off"
effect = "disable"
resources = ["camera"]
inside = ["lab"]

[[rules]]
id = "away-off"
effect = "disable"
resources = ["usb"]
outside = ["lab"]
when_unknown = "apply"
"#;

    #[test]
    fn locations_edges_and_unknown() {
        let p = policy(SITES);
        let mut ctx = Context::at(ts("2026-11-23T10:00:00Z"));
        // No location: `inside` rules are skipped; `when_unknown = "apply"` applies.
        assert_eq!(state(&p, &ctx, "camera"), State::Enabled);
        assert_eq!(state(&p, &ctx, "usb"), State::Disabled);
        // On the polygon's edge and at a vertex: inside.
        for (lat, lon) in [(48.0, 2.05), (48.1, 2.1), (48.05, 2.0)] {
            ctx.location = Position::new(lat, lon);
            assert_eq!(state(&p, &ctx, "camera"), State::Disabled, "{lat},{lon}");
            assert_eq!(state(&p, &ctx, "usb"), State::Enabled, "{lat},{lon}");
        }
        ctx.location = Position::new(48.2, 2.05);
        assert_eq!(state(&p, &ctx, "camera"), State::Enabled);
        assert_eq!(state(&p, &ctx, "usb"), State::Disabled);
        // No time condition: never changes while the device stays.
        assert_eq!(next_change(&p, &ctx), None);
    }

    #[test]
    fn networks_and_dates() {
        let p = policy(
            r#"
[[rules]]
id = "corp"
effect = "disable"
resources = ["screen-capture"]
networks = ["corp-wifi"]

[[rules]]
id = "audit-week"
effect = "disable"
resources = ["usb"]
dates = { from = "2026-12-01", to = "2026-12-04" }
"#,
        );
        let mut ctx = Context::at(ts("2026-11-23T10:00:00Z"));
        assert_eq!(state(&p, &ctx, "screen-capture"), State::Enabled);
        ctx.network = Some("corp-wifi".into());
        assert_eq!(state(&p, &ctx, "screen-capture"), State::Disabled);
        ctx.network = Some("home".into());
        assert_eq!(state(&p, &ctx, "screen-capture"), State::Enabled);
        // The date range starts at local midnight of 1 December (23:00Z the day before)
        // and ends at the end of 4 December.
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-30T23:00:00Z")));
        let ctx = ctx.with_time(ts("2026-12-02T12:00:00Z"));
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-12-04T23:00:00Z")));
        let ctx = ctx.with_time(ts("2026-12-05T00:00:00Z"));
        assert_eq!(next_change(&p, &ctx), None);
        // Far ahead: a date range two years on is still found.
        let far = policy("[[rules]]\nid = \"f\"\neffect = \"disable\"\nresources = [\"nfc\"]\ndates = { from = \"2028-06-01\", to = \"2028-06-01\" }\n");
        assert_eq!(
            next_change(&far, &Context::at(ts("2026-11-23T00:00:00Z"))),
            Some(ts("2028-05-31T22:00:00Z"))
        );
    }

    #[test]
    fn commands_override_and_expire() {
        let p = policy(WORK);
        let mut ctx = Context::at(ts("2026-11-23T10:00:00Z"));
        ctx.overrides = vec![
            Override {
                resource: "camera".into(),
                state: State::Enabled,
                until: Some(ts("2026-11-23T11:00:00Z")),
                counter: 1,
            },
            Override {
                resource: "camera".into(),
                state: State::Disabled,
                until: Some(ts("2026-11-23T10:30:00Z")),
                counter: 2,
            },
        ];
        let d = evaluate(&p, &ctx).remove(0);
        assert_eq!(
            d.decided_by,
            DecidedBy::Command {
                counter: 2,
                until: Some(ts("2026-11-23T10:30:00Z"))
            }
        );
        // 10:30 counter 2 expires: counter 1 enables; 11:00 it expires: the rule disables.
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-23T10:30:00Z")));
        let c = ctx.with_time(ts("2026-11-23T10:30:00Z"));
        assert_eq!(next_change(&p, &c), Some(ts("2026-11-23T11:00:00Z")));
    }

    #[test]
    fn a_command_expiring_over_a_rule_with_the_same_effect_is_a_reevaluation() {
        // Monday 10:00 Paris: the rule already disables the camera; a command
        // disabling it until 10:00:03 changes no state when it expires, but
        // what decides the camera changes from the command to the rule.
        let p = policy(WORK);
        let mut ctx = Context::at(ts("2026-11-23T09:00:00Z"));
        ctx.overrides = vec![Override {
            resource: "camera".into(),
            state: State::Disabled,
            until: Some(ts("2026-11-23T09:00:03Z")),
            counter: 10,
        }];
        assert_eq!(next_change(&p, &ctx), Some(ts("2026-11-23T17:00:00Z")));
        assert_eq!(
            next_reevaluation(&p, &ctx),
            Some(ts("2026-11-23T09:00:03Z"))
        );
        let after = evaluate(&p, &ctx.with_time(ts("2026-11-23T09:00:03Z"))).remove(0);
        assert_eq!(after.state, State::Disabled);
        assert_eq!(
            after.decided_by,
            DecidedBy::Rule {
                id: "work".into(),
                priority: 0
            }
        );
    }

    #[test]
    fn a_rule_taking_over_from_the_default_with_the_same_effect_is_a_reevaluation() {
        let p = policy(
            "[defaults]\ncamera = \"disable\"\n[[rules]]\nid = \"night\"\neffect = \"disable\"\nresources = [\"camera\"]\nfrom = \"22:00\"\nto = \"06:00\"\n",
        );
        let ctx = Context::at(ts("2026-11-23T12:00:00Z"));
        assert_eq!(evaluate(&p, &ctx)[0].decided_by, DecidedBy::Default);
        assert_eq!(next_change(&p, &ctx), None);
        // 22:00 Paris is 21:00Z: the rule decides from then on, with the same effect.
        assert_eq!(
            next_reevaluation(&p, &ctx),
            Some(ts("2026-11-23T21:00:00Z"))
        );
    }

    #[test]
    fn timeline_segments_cover_the_range() {
        let p = policy(WORK);
        let from = ts("2026-11-23T00:00:00Z");
        let to = ts("2026-11-30T00:00:00Z");
        let segs = timeline(&p, &Context::at(from), from, to);
        assert_eq!(segs.len(), 11);
        assert_eq!(segs[0].from, from);
        assert_eq!(segs.last().unwrap().to, to);
        for w in segs.windows(2) {
            assert_eq!(w[0].to, w[1].from);
            assert_ne!(w[0].decisions[0].state, w[1].decisions[0].state);
        }
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        let rule = (
            any::<bool>(),
            0u8..3,
            prop::sample::subsequence(vec!["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 1..7),
            0u16..96,
            0u16..96,
            prop::sample::select(vec![
                "Europe/Paris",
                "America/New_York",
                "Australia/Lord_Howe",
                "UTC",
                "Asia/Kolkata",
            ]),
            -1i64..2,
        );
        prop::collection::vec(rule, 1..5).prop_filter_map("from == to", |rules| {
            let mut body = String::new();
            for (i, (disable, res, days, from, to, tz, prio)) in rules.into_iter().enumerate() {
                if from == to {
                    return None;
                }
                let res = ["camera", "usb", "wifi"][res as usize];
                let days: Vec<String> = days.iter().map(|d| format!("\"{d}\"")).collect();
                body.push_str(&format!(
                    "[[rules]]\nid = \"r{i}\"\neffect = \"{}\"\nresources = [\"{res}\"]\npriority = {prio}\ndays = [{}]\nfrom = \"{:02}:{:02}\"\nto = \"{:02}:{:02}\"\ntimezone = \"{tz}\"\n",
                    if disable { "disable" } else { "enable" },
                    days.join(", "),
                    from / 4, (from % 4) * 15, to / 4, (to % 4) * 15,
                ));
            }
            Policy::parse(&format!("format = \"dmsc-policy\"\nversion = 1\nname = \"p\"\ntimezone = \"UTC\"\n{body}")).ok()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Between `t` and `next_change(t)` nothing changes; at it, something does.
        #[test]
        fn evaluate_is_consistent_with_next_change(
            p in arb_policy(),
            secs in 1_767_225_600i64..1_830_297_600, // 2026 … 2027
            probes in prop::collection::vec(0.0f64..1.0, 4),
        ) {
            let t = Timestamp::from_second(secs).unwrap();
            let ctx = Context::at(t);
            let now = states(&p, &ctx);
            let Some(n) = next_change(&p, &ctx) else {
                // Never changes: constant over the next weeks.
                for k in 1..30i64 {
                    let s = t.checked_add(SignedDuration::from_hours(k * 13)).unwrap();
                    prop_assert_eq!(states(&p, &ctx.with_time(s)), now.clone());
                }
                return Ok(());
            };
            prop_assert!(n > t);
            // Not within a week in general: rules in zones whose DST dates
            // differ can leave a gap that opens only for a few weeks a year.
            prop_assert!(n.duration_since(t) <= SignedDuration::from_hours(24 * i64::from(HORIZON_DAYS)));
            prop_assert_ne!(states(&p, &ctx.with_time(n)), now.clone());
            let span = n.duration_since(t).as_secs();
            for f in probes {
                let s = t.checked_add(SignedDuration::from_secs((span as f64 * f) as i64)).unwrap();
                if s < n {
                    prop_assert_eq!(states(&p, &ctx.with_time(s)), now.clone(), "at {}", s);
                }
            }
            let just_before = n.checked_sub(SignedDuration::from_secs(1)).unwrap();
            if just_before >= t {
                prop_assert_eq!(states(&p, &ctx.with_time(just_before)), now);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Between `t` and `next_reevaluation(t)` no decision changes (state or
        /// what decided it); at it, one does; it is never later than `next_change`.
        #[test]
        fn evaluate_is_consistent_with_next_reevaluation(
            p in arb_policy(),
            secs in 1_767_225_600i64..1_830_297_600, // 2026 … 2027
            expiry in 1i64..200_000,
            disable in any::<bool>(),
            probes in prop::collection::vec(0.0f64..1.0, 4),
        ) {
            let t = Timestamp::from_second(secs).unwrap();
            let mut ctx = Context::at(t);
            ctx.overrides = vec![Override {
                resource: "camera".into(),
                state: if disable { State::Disabled } else { State::Enabled },
                until: Some(t.checked_add(SignedDuration::from_secs(expiry)).unwrap()),
                counter: 1,
            }];
            let now = evaluate(&p, &ctx);
            // A command expires within the range: there is always a re-evaluation.
            let n = next_reevaluation(&p, &ctx);
            prop_assert!(n.is_some());
            let n = n.unwrap();
            prop_assert!(n > t);
            if let Some(c) = next_change(&p, &ctx) {
                prop_assert!(n <= c);
            }
            prop_assert_ne!(evaluate(&p, &ctx.with_time(n)), now.clone());
            let span = n.duration_since(t).as_secs();
            for f in probes {
                let s = t.checked_add(SignedDuration::from_secs((span as f64 * f) as i64)).unwrap();
                if s < n {
                    prop_assert_eq!(evaluate(&p, &ctx.with_time(s)), now.clone(), "at {}", s);
                }
            }
        }
    }
}
