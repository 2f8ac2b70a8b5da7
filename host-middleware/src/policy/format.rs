//! The policy file: TOML, schema `dmsc-policy` version 1 (`docs/policy.md`).
//!
//! [`Policy::parse`] reads and validates a policy. Every error carries the
//! line and column of the offending value and the rule (or section) it
//! belongs to; nothing is half-accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::geo::{Position, Site};
use super::{PolicyError, PolicyProblem};

/// The value of `format` in every policy file.
pub const FORMAT: &str = "dmsc-policy";
/// The schema version this code reads.
pub const VERSION: u32 = 1;

/// The resources every policy may name without declaring them (besides `app:<id>`).
pub const BUILTIN_RESOURCES: [&str; 8] = [
    "camera",
    "bluetooth",
    "wifi",
    "usb",
    "ir",
    "nfc",
    "microphone",
    "screen-capture",
];

/// Whether a resource is allowed (`enabled`) or forbidden (`disabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The resource may be used.
    Enabled,
    /// The resource is forbidden.
    Disabled,
}

impl State {
    /// `enabled` or `disabled`.
    pub fn word(self) -> &'static str {
        match self {
            State::Enabled => "enabled",
            State::Disabled => "disabled",
        }
    }

    /// Parses `enabled`/`enable`/`on` or `disabled`/`disable`/`off`.
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "enabled" | "enable" | "on" => Some(State::Enabled),
            "disabled" | "disable" | "off" => Some(State::Disabled),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.word())
    }
}

/// What a rule does when it is not sure: location or network unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnknown {
    /// The condition is false: the rule does not apply (the default).
    Skip,
    /// The condition is taken as met: the rule applies (fail closed for
    /// `disable` rules).
    Apply,
}

/// A weekly time window in a time zone, optionally limited to a date range.
#[derive(Debug, Clone)]
pub struct Window {
    /// The days on which the window *starts* (Monday = index 0).
    pub days: [bool; 7],
    /// Start, minutes after local midnight (0..1440).
    pub from: u16,
    /// End, minutes after local midnight (1..=1440). `to <= from` means the
    /// window ends on the next day.
    pub to: u16,
    /// The zone the times are in.
    pub tz: TimeZone,
    /// Its IANA name.
    pub tz_name: String,
    /// First and last local start date (inclusive).
    pub dates: Option<(Date, Date)>,
}

/// One rule of a policy.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's identifier, unique in the policy.
    pub id: String,
    /// Enable or disable.
    pub effect: State,
    /// The resources it acts on.
    pub resources: Vec<String>,
    /// Higher wins; default 0.
    pub priority: i64,
    /// When, if limited in time.
    pub window: Option<Window>,
    /// Sites the device must be inside (any of them).
    pub inside: Vec<String>,
    /// Sites the device must be outside (all of them).
    pub outside: Vec<String>,
    /// Networks the device must be on (any of them).
    pub networks: Vec<String>,
    /// What to do when location or network is unknown.
    pub when_unknown: WhenUnknown,
    /// 1-based line of the rule in the policy file.
    pub line: usize,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Human name.
    pub name: String,
    /// The enterprise's serial number of this policy (informative).
    pub serial: u64,
    /// The default time zone's IANA name.
    pub timezone: String,
    /// The resources the policy manages, sorted.
    pub resources: Vec<String>,
    /// The state of each managed resource when no rule applies.
    pub defaults: BTreeMap<String, State>,
    /// Named sites.
    pub sites: BTreeMap<String, Site>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    format: Spanned<String>,
    version: Spanned<i64>,
    name: Spanned<String>,
    #[serde(default)]
    serial: Option<Spanned<i64>>,
    timezone: Spanned<String>,
    #[serde(default)]
    declare: Vec<Spanned<String>>,
    #[serde(default)]
    defaults: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    sites: BTreeMap<Spanned<String>, Spanned<RawSite>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    #[serde(default)]
    center: Option<Spanned<[f64; 2]>>,
    #[serde(default)]
    radius_m: Option<Spanned<f64>>,
    #[serde(default)]
    polygon: Option<Spanned<Vec<[f64; 2]>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDates {
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    effect: Spanned<String>,
    resources: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    priority: Option<Spanned<i64>>,
    #[serde(default)]
    days: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    from: Option<Spanned<String>>,
    #[serde(default)]
    to: Option<Spanned<String>>,
    #[serde(default)]
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    dates: Option<Spanned<RawDates>>,
    #[serde(default)]
    inside: Vec<Spanned<String>>,
    #[serde(default)]
    outside: Vec<Spanned<String>>,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
    #[serde(default)]
    when_unknown: Option<Spanned<String>>,
}

/// Line and column (1-based, in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

struct Ctx<'a> {
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        rule: Option<&str>,
        problem: PolicyProblem,
    ) -> Result<T, PolicyError> {
        let (line, column) = line_column(self.text, span.start);
        Err(PolicyError::Invalid {
            line,
            column,
            rule: rule.map(str::to_string),
            problem,
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `name` is a resource this policy may use: a built-in one,
/// `app:<id>`, or one of `declared`.
fn resource_known(name: &str, declared: &BTreeSet<String>) -> bool {
    if BUILTIN_RESOURCES.contains(&name) || declared.contains(name) {
        return true;
    }
    match name.strip_prefix("app:") {
        Some(id) => valid_name(id) && id.len() <= 128,
        None => false,
    }
}

/// Parses `HH:MM` (00:00 … 24:00) into minutes.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Option<usize> {
    DAY_NAMES.iter().position(|d| *d == s)
}

/// The index (Monday = 0) of a weekday.
pub fn weekday_index(w: Weekday) -> usize {
    (w.to_monday_zero_offset()) as usize
}

/// Parses `mon`, `mon-fri` (wrapping ranges such as `fri-mon` allowed) and `all`.
fn parse_days(s: &str, days: &mut [bool; 7]) -> bool {
    if s == "all" {
        *days = [true; 7];
        return true;
    }
    if let Some((a, b)) = s.split_once('-') {
        let (Some(a), Some(b)) = (day_index(a), day_index(b)) else {
            return false;
        };
        let mut i = a;
        loop {
            days[i] = true;
            if i == b {
                break;
            }
            i = (i + 1) % 7;
        }
        return true;
    }
    match day_index(s) {
        Some(i) => {
            days[i] = true;
            true
        }
        None => false,
    }
}

fn time_zone(c: &Ctx, name: &Spanned<String>, rule: Option<&str>) -> Result<TimeZone, PolicyError> {
    match TimeZone::get(name.get_ref()) {
        Ok(tz) => Ok(tz),
        Err(_) => c.err(
            name.span(),
            rule,
            PolicyProblem::UnknownTimeZone {
                name: name.get_ref().clone(),
            },
        ),
    }
}

impl Policy {
    /// Parses and validates a policy file (UTF-8 TOML).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let c = Ctx { text };
        let raw: RawPolicy = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let (line, column) = e
                    .span()
                    .map(|s| line_column(text, s.start))
                    .unwrap_or((1, 1));
                let rule = e.span().and_then(|s| rule_at(text, s.start));
                let message = e.message().trim().to_string();
                // An unquoted 06:00 or 2026-01-01 is a TOML date-time, not a string.
                let bare_value = e.span().and_then(|s| text.get(s)).is_some_and(|v| {
                    let v = v.trim();
                    !v.is_empty()
                        && v.chars().next().is_some_and(|c| c.is_ascii_digit())
                        && v.chars()
                            .all(|c| c.is_ascii_digit() || ":-T .+Z".contains(c))
                });
                let bare_time = bare_value && message.contains("expected a string");
                return Err(PolicyError::Invalid {
                    line,
                    column,
                    rule,
                    problem: PolicyProblem::Toml { message, bare_time },
                });
            }
        };
        if raw.format.get_ref() != FORMAT {
            return c.err(
                raw.format.span(),
                None,
                PolicyProblem::Format {
                    found: raw.format.get_ref().clone(),
                },
            );
        }
        if *raw.version.get_ref() != i64::from(VERSION) {
            return c.err(
                raw.version.span(),
                None,
                PolicyProblem::Version {
                    found: *raw.version.get_ref(),
                },
            );
        }
        let serial = match &raw.serial {
            Some(s) if *s.get_ref() < 0 => {
                return c.err(
                    s.span(),
                    None,
                    PolicyProblem::NegativeSerial {
                        found: *s.get_ref(),
                    },
                )
            }
            Some(s) => *s.get_ref() as u64,
            None => 0,
        };
        let tz = time_zone(&c, &raw.timezone, None)?;

        let mut declared = BTreeSet::new();
        for d in &raw.declare {
            let name = d.get_ref();
            if BUILTIN_RESOURCES.contains(&name.as_str()) || name.starts_with("app:") {
                return c.err(
                    d.span(),
                    None,
                    PolicyProblem::DeclaredBuiltIn { name: name.clone() },
                );
            }
            if !valid_name(name) || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return c.err(
                    d.span(),
                    None,
                    PolicyProblem::DeclaredName { name: name.clone() },
                );
            }
            if !declared.insert(name.clone()) {
                return c.err(
                    d.span(),
                    None,
                    PolicyProblem::DeclaredTwice { name: name.clone() },
                );
            }
        }
        let check_resource = |r: &Spanned<String>, rule: Option<&str>| {
            if resource_known(r.get_ref(), &declared) {
                Ok(r.get_ref().clone())
            } else {
                c.err(
                    r.span(),
                    rule,
                    PolicyProblem::UnknownResource {
                        name: r.get_ref().clone(),
                    },
                )
            }
        };

        let mut resources = BTreeSet::new();
        let mut defaults = BTreeMap::new();
        for (k, v) in &raw.defaults {
            let name = check_resource(k, Some("defaults"))?;
            let Some(state) = State::parse(v.get_ref()) else {
                return c.err(
                    v.span(),
                    Some("defaults"),
                    PolicyProblem::DefaultState {
                        value: v.get_ref().clone(),
                    },
                );
            };
            resources.insert(name.clone());
            defaults.insert(name, state);
        }

        let mut sites = BTreeMap::new();
        for (k, v) in &raw.sites {
            if !valid_name(k.get_ref()) {
                return c.err(
                    k.span(),
                    None,
                    PolicyProblem::SiteName {
                        name: k.get_ref().clone(),
                    },
                );
            }
            let site = site(&c, k.get_ref(), v)?;
            sites.insert(k.get_ref().clone(), site);
        }

        let mut rules = Vec::new();
        let mut ids = BTreeSet::new();
        for r in &raw.rules {
            let rule = rule(&c, r, &tz, raw.timezone.get_ref(), &sites, &check_resource)?;
            if !ids.insert(rule.id.clone()) {
                return c.err(
                    r.get_ref().id.span(),
                    Some(&rule.id),
                    PolicyProblem::DuplicateRuleId {
                        id: rule.id.clone(),
                    },
                );
            }
            resources.extend(rule.resources.iter().cloned());
            rules.push(rule);
        }
        for r in &resources {
            defaults.entry(r.clone()).or_insert(State::Enabled);
        }
        if raw.name.get_ref().trim().is_empty() {
            return c.err(raw.name.span(), None, PolicyProblem::EmptyName);
        }
        Ok(Policy {
            name: raw.name.into_inner(),
            serial,
            timezone: raw.timezone.into_inner(),
            resources: resources.into_iter().collect(),
            defaults,
            sites,
            rules,
        })
    }

    /// Whether the policy manages `resource`.
    pub fn manages(&self, resource: &str) -> bool {
        self.defaults.contains_key(resource)
    }
}

/// The id of the `[[rules]]` entry that contains byte `offset`, if any.
fn rule_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let start = before.rfind("[[rules]]")?;
    // Another table header after it ends the rule.
    let after_header = &before[start + 9..];
    if after_header.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with('[') && !t.starts_with("[[rules]]")
    }) {
        return None;
    }
    let rest = &text[start + 9..];
    let end = rest.find("\n[").unwrap_or(rest.len());
    rest[..end].lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "id").then(|| v.trim().trim_matches('"').to_string())
    })
}

fn site(c: &Ctx, name: &str, raw: &Spanned<RawSite>) -> Result<Site, PolicyError> {
    let rule = format!("sites.{name}");
    let rule = Some(rule.as_str());
    let r = raw.get_ref();
    let pos = |p: &[f64; 2], span: std::ops::Range<usize>| match Position::new(p[0], p[1]) {
        Some(p) => Ok(p),
        None => c.err(
            span,
            rule,
            PolicyProblem::Position {
                latitude: p[0],
                longitude: p[1],
            },
        ),
    };
    match (&r.center, &r.radius_m, &r.polygon) {
        (Some(center), Some(radius), None) => {
            let center = pos(center.get_ref(), center.span())?;
            let m = *radius.get_ref();
            if !(m.is_finite() && m > 0.0 && m <= 1.0e6) {
                return c.err(radius.span(), rule, PolicyProblem::Radius { radius_m: m });
            }
            Ok(Site::Circle {
                center,
                radius_m: m,
            })
        }
        (None, None, Some(poly)) => {
            let pts = poly.get_ref();
            if pts.len() < 3 {
                return c.err(
                    poly.span(),
                    rule,
                    PolicyProblem::TooFewPoints { points: pts.len() },
                );
            }
            let mut vertices = Vec::with_capacity(pts.len());
            for p in pts {
                vertices.push(pos(p, poly.span())?);
            }
            match Site::polygon(vertices) {
                Some(s) => Ok(s),
                None => c.err(poly.span(), rule, PolicyProblem::PolygonShape),
            }
        }
        _ => c.err(raw.span(), rule, PolicyProblem::SiteShape),
    }
}

fn rule<F>(
    c: &Ctx,
    raw: &Spanned<RawRule>,
    policy_tz: &TimeZone,
    policy_tz_name: &str,
    sites: &BTreeMap<String, Site>,
    check_resource: &F,
) -> Result<Rule, PolicyError>
where
    F: Fn(&Spanned<String>, Option<&str>) -> Result<String, PolicyError>,
{
    let r = raw.get_ref();
    let id = r.id.get_ref().clone();
    if !valid_name(&id) {
        return c.err(r.id.span(), None, PolicyProblem::RuleId { id });
    }
    let rid = Some(id.as_str());
    let effect = match r.effect.get_ref().as_str() {
        "enable" => State::Enabled,
        "disable" => State::Disabled,
        other => {
            return c.err(
                r.effect.span(),
                rid,
                PolicyProblem::Effect {
                    effect: other.to_string(),
                },
            )
        }
    };
    if r.resources.get_ref().is_empty() {
        return c.err(r.resources.span(), rid, PolicyProblem::NoResources);
    }
    let mut resources = Vec::new();
    for res in r.resources.get_ref() {
        let name = check_resource(res, rid)?;
        if resources.contains(&name) {
            return c.err(res.span(), rid, PolicyProblem::ResourceTwice { name });
        }
        resources.push(name);
    }
    let priority = r.priority.as_ref().map(|p| *p.get_ref()).unwrap_or(0);

    let timed = r.days.is_some()
        || r.from.is_some()
        || r.to.is_some()
        || r.dates.is_some()
        || r.timezone.is_some();
    let window = if timed {
        let mut days = [false; 7];
        match &r.days {
            Some(list) => {
                if list.get_ref().is_empty() {
                    return c.err(list.span(), rid, PolicyProblem::NoDays);
                }
                for d in list.get_ref() {
                    if !parse_days(d.get_ref(), &mut days) {
                        return c.err(
                            d.span(),
                            rid,
                            PolicyProblem::Day {
                                day: d.get_ref().clone(),
                            },
                        );
                    }
                }
            }
            None => days = [true; 7],
        }
        let minutes = |s: &Option<Spanned<String>>, default: u16| match s {
            Some(s) => match parse_hhmm(s.get_ref()) {
                Some(m) => Ok((m, Some(s.span()))),
                None => c.err(
                    s.span(),
                    rid,
                    PolicyProblem::TimeOfDay {
                        time: s.get_ref().clone(),
                    },
                ),
            },
            None => Ok((default, None)),
        };
        let (from, from_span) = minutes(&r.from, 0)?;
        let (to, to_span) = minutes(&r.to, 1440)?;
        if from == 1440 {
            return c.err(
                from_span.unwrap_or(raw.span()),
                rid,
                PolicyProblem::FromEndOfDay,
            );
        }
        if to == 0 && to_span.is_some() && from == 0 {
            return c.err(
                to_span.unwrap_or(raw.span()),
                rid,
                PolicyProblem::FromEqualsTo { minutes: from },
            );
        }
        if from == to {
            return c.err(
                to_span.unwrap_or(raw.span()),
                rid,
                PolicyProblem::FromEqualsTo { minutes: from },
            );
        }
        let (tz, tz_name) = match &r.timezone {
            Some(name) => (time_zone(c, name, rid)?, name.get_ref().clone()),
            None => (policy_tz.clone(), policy_tz_name.to_string()),
        };
        let dates = match &r.dates {
            Some(d) => {
                let parse = |s: &Spanned<String>| match s.get_ref().parse::<Date>() {
                    Ok(d) => Ok(d),
                    Err(_) => c.err(
                        s.span(),
                        rid,
                        PolicyProblem::Date {
                            date: s.get_ref().clone(),
                        },
                    ),
                };
                let a = parse(&d.get_ref().from)?;
                let b = parse(&d.get_ref().to)?;
                if b < a {
                    return c.err(
                        d.span(),
                        rid,
                        PolicyProblem::DatesReversed { from: a, to: b },
                    );
                }
                Some((a, b))
            }
            None => None,
        };
        Some(Window {
            days,
            from,
            to,
            tz,
            tz_name,
            dates,
        })
    } else {
        None
    };

    let site_list = |list: &[Spanned<String>]| -> Result<Vec<String>, PolicyError> {
        list.iter()
            .map(|s| {
                if sites.contains_key(s.get_ref()) {
                    Ok(s.get_ref().clone())
                } else {
                    c.err(
                        s.span(),
                        rid,
                        PolicyProblem::UnknownSite {
                            name: s.get_ref().clone(),
                        },
                    )
                }
            })
            .collect()
    };
    let inside = site_list(&r.inside)?;
    let outside = site_list(&r.outside)?;
    let networks: Vec<String> = r.networks.iter().map(|n| n.get_ref().clone()).collect();
    if let Some(n) = r.networks.iter().find(|n| n.get_ref().is_empty()) {
        return c.err(n.span(), rid, PolicyProblem::EmptyNetwork);
    }
    let when_unknown = match &r.when_unknown {
        None => WhenUnknown::Skip,
        Some(w) => match w.get_ref().as_str() {
            "skip" => WhenUnknown::Skip,
            "apply" => WhenUnknown::Apply,
            other => {
                return c.err(
                    w.span(),
                    rid,
                    PolicyProblem::WhenUnknown {
                        value: other.to_string(),
                    },
                )
            }
        },
    };
    if r.when_unknown.is_some() && inside.is_empty() && outside.is_empty() && networks.is_empty() {
        if let Some(w) = &r.when_unknown {
            return c.err(w.span(), rid, PolicyProblem::WhenUnknownWithoutCondition);
        }
    }
    let (line, _) = line_column(c.text, raw.span().start);
    Ok(Rule {
        id,
        effect,
        resources,
        priority,
        window,
        inside,
        outside,
        networks,
        when_unknown,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unquoted_time_says_times_are_quoted_strings() {
        let text = "format = \"dmsc-policy\"\nversion = 1\nname = \"A\"\ntimezone = \"UTC\"\n\
                    [[rules]]\nid = \"night\"\neffect = \"disable\"\nresources = [\"camera\"]\n\
                    from = \"22:00\"\nto = 06:00\n";
        let e = Policy::parse(text).expect_err("unquoted time");
        let m = e.to_string();
        assert!(
            m.contains("quoted strings") && m.contains("\"06:00\""),
            "{m}"
        );
    }

    pub(crate) const SAMPLE: &str = r#"
format = "dmsc-policy"
version = 1
name = "ACME"
timezone = "Europe/Paris"
declare = ["torch"]

[defaults]
camera = "enabled"
torch = "enabled"

[sites.hq]
center = [48.8566, 2.3522]
radius_m = 300

[sites.lab]
polygon = [[48.0, 2.0], [48.0, 2.1], [48.1, 2.1], [48.1, 2.0]]

[[rules]]
id = "work"
effect = "disable"
resources = ["camera", "usb"]
days = ["mon-fri"]
from = "08:00"
to = "18:00"

[[rules]]
id = "lab"
effect = "disable"
resources = ["bluetooth", "app:com.example.chat"]
inside = ["lab"]
"#;

    fn err(text: &str) -> (usize, usize, Option<String>, String) {
        match Policy::parse(text) {
            Err(PolicyError::Invalid {
                line,
                column,
                rule,
                problem,
            }) => (line, column, rule, problem.to_string()),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn sample_parses() {
        let p = Policy::parse(SAMPLE).unwrap();
        assert_eq!(p.name, "ACME");
        assert_eq!(
            p.resources,
            [
                "app:com.example.chat",
                "bluetooth",
                "camera",
                "torch",
                "usb"
            ]
        );
        assert_eq!(p.rules.len(), 2);
        assert_eq!(p.rules[0].line, 19);
        let w = p.rules[0].window.as_ref().unwrap();
        assert_eq!((w.from, w.to), (480, 1080));
        assert_eq!(w.days, [true, true, true, true, true, false, false]);
    }

    #[test]
    fn unknown_resource_has_position_and_rule() {
        let text = SAMPLE.replace("[\"camera\", \"usb\"]", "[\"camera\", \"flashlight\"]");
        let (line, col, rule, msg) = err(&text);
        assert_eq!((line, col), (22, 24));
        assert_eq!(rule.as_deref(), Some("work"));
        assert!(msg.contains("unknown resource 'flashlight'"), "{msg}");
    }

    #[test]
    fn undeclared_default_is_refused() {
        let text = SAMPLE.replace("declare = [\"torch\"]", "");
        let (line, _, rule, msg) = err(&text);
        assert_eq!(line, 10);
        assert_eq!(rule.as_deref(), Some("defaults"));
        assert!(msg.contains("'torch'"), "{msg}");
    }

    #[test]
    fn syntax_error_has_position() {
        let text = SAMPLE.replace("from = \"08:00\"", "from = 08:00:99");
        let (line, col, rule, _msg) = err(&text);
        assert_eq!(line, 24);
        assert!(col >= 8, "{col}");
        assert_eq!(rule.as_deref(), Some("work"));
    }

    #[test]
    fn unknown_field_names_the_rule() {
        let text = SAMPLE.replace("from = \"08:00\"", "start = \"08:00\"");
        let (line, _, rule, msg) = err(&text);
        assert_eq!(line, 24);
        assert_eq!(rule.as_deref(), Some("work"));
        assert!(msg.contains("start"), "{msg}");
    }

    #[test]
    fn bad_values() {
        for (from, to, needle) in [
            ("from = \"08:00\"", "from = \"8am\"", "not a time"),
            ("to = \"18:00\"", "to = \"08:00\"", "equal"),
            ("days = [\"mon-fri\"]", "days = [\"weekday\"]", "not a day"),
            ("inside = [\"lab\"]", "inside = [\"moon\"]", "no site named"),
            ("radius_m = 300", "radius_m = -1", "radius_m"),
            ("version = 1", "version = 2", "unsupported policy version"),
            (
                "timezone = \"Europe/Paris\"",
                "timezone = \"Mars/Olympus\"",
                "unknown time zone",
            ),
            ("[48.1, 2.0]]", "[48.1, 200.0]]", "longitude"),
            (
                "effect = \"disable\"\nresources = [\"camera\"",
                "effect = \"block\"\nresources = [\"camera\"",
                "neither enable",
            ),
        ] {
            let text = SAMPLE.replace(from, to);
            assert_ne!(text, SAMPLE, "{from}");
            let (_, _, _, msg) = err(&text);
            assert!(msg.contains(needle), "{to}: {msg}");
        }
    }

    #[test]
    fn problems_are_typed_and_read_as_the_messages_did() {
        let text = SAMPLE.replace("[\"camera\", \"usb\"]", "[\"camera\", \"flashlight\"]");
        let e = Policy::parse(&text).unwrap_err();
        assert!(
            matches!(
                &e,
                PolicyError::Invalid {
                    problem: PolicyProblem::UnknownResource { name },
                    ..
                } if name == "flashlight"
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "line 22, column 24 (rule work): unknown resource 'flashlight' (built in: camera, \
             bluetooth, wifi, usb, ir, nfc, microphone, screen-capture, app:<id>; others must be \
             listed in `declare`)"
        );

        let e = Policy::parse(&SAMPLE.replace("version = 1", "version = 2")).unwrap_err();
        assert!(
            matches!(
                &e,
                PolicyError::Invalid {
                    problem: PolicyProblem::Version { found: 2 },
                    rule: None,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "line 3, column 11: unsupported policy version 2 (this dmsc reads version 1)"
        );

        let text = SAMPLE.replace(
            "to = \"18:00\"",
            "to = \"18:00\"\ndates = { from = \"2026-03-01\", to = \"2026-02-01\" }",
        );
        let e = Policy::parse(&text).unwrap_err();
        assert!(
            matches!(
                &e,
                PolicyError::Invalid {
                    problem: PolicyProblem::DatesReversed { from, to },
                    ..
                } if *from == jiff::civil::date(2026, 3, 1) && *to == jiff::civil::date(2026, 2, 1)
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "line 26, column 9 (rule work): dates: to comes before from"
        );

        let e = Policy::parse(&SAMPLE.replace("to = \"18:00\"", "to = 18:00")).unwrap_err();
        let PolicyError::Invalid {
            problem: PolicyProblem::Toml { message, bare_time },
            ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert!(*bare_time, "{e:?}");
        assert!(
            e.to_string().ends_with(&format!(
                "(rule work): {message}: times and dates are quoted strings in a policy, \
                 e.g. to = \"06:00\""
            )),
            "{e}"
        );
    }

    #[test]
    fn duplicate_rule_id() {
        let text = SAMPLE.replace("id = \"lab\"", "id = \"work\"");
        let (line, _, rule, msg) = err(&text);
        assert_eq!(line, 28);
        assert_eq!(rule.as_deref(), Some("work"));
        assert!(msg.contains("earlier"), "{msg}");
    }

    proptest::proptest! {
        /// Any edit of a valid policy parses or fails with a position inside the text.
        #[test]
        fn edits_never_panic_and_errors_point_into_the_text(
            at in 0usize..1000,
            cut in 0usize..6,
            insert in "[ -~\n\\[\\]\"=]{0,6}",
        ) {
            let mut text: Vec<char> = SAMPLE.chars().collect();
            let at = at % (text.len() + 1);
            let end = (at + cut).min(text.len());
            text.splice(at..end, insert.chars());
            let text: String = text.into_iter().collect();
            if let Err(PolicyError::Invalid { line, column, .. }) = Policy::parse(&text) {
                let lines: Vec<&str> = text.split('\n').collect();
                proptest::prop_assert!(line >= 1 && line <= lines.len());
                proptest::prop_assert!(column >= 1 && column <= lines[line - 1].chars().count() + 1);
            }
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_column("x", 0), (1, 1));
    }
}
