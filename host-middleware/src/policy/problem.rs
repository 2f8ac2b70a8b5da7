//! What exactly went wrong in the policy use case: the typed causes carried
//! by [`PolicyError`](super::PolicyError)'s variants.

use dmsc_card_model::objects::{Acl, Principal, Right};
use jiff::civil::Date;
use jiff::Timestamp;

use super::format::{BUILTIN_RESOURCES, FORMAT, VERSION};
use super::signing::{COMMAND_MAGIC, ENVELOPE_MAGIC};
use crate::p256_keys::KeyError;

/// Why a key cannot be used ([`PolicyError::Key`](super::PolicyError::Key)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIssue {
    /// The key file does not hold a P-256 key.
    #[error("{0}")]
    Load(#[source] KeyError),
    /// The card holds another enterprise key than the signing key's, and
    /// replacing it was not asked for.
    #[error(
        "the card's enterprise key (fingerprint {card}) is not the signing key's ({signer}); \
         to replace it, give --replace-key"
    )]
    NotTheSigningKey {
        /// The first 16 hex digits of the card's key's fingerprint.
        card: String,
        /// The first 16 hex digits of the signing key's fingerprint.
        signer: String,
    },
}

/// What is malformed ([`PolicyError::Malformed`](super::PolicyError::Malformed)).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Malformation {
    /// The card's policy object is not a signed-policy envelope.
    #[error("the card's policy object is not a signed policy ({0})")]
    Envelope(EnvelopeFault),
    /// A command statement is not in the canonical form.
    #[error("command statement: {0}")]
    Statement(StatementFault),
    /// A signed command of another schema version.
    #[error("command schema_version {0} (this dmsc reads 1)")]
    SchemaVersion(u32),
    /// A signed command's signature is not hex.
    #[error("command signature is not hex")]
    SignatureNotHex,
    /// The card's policy object holds another kind of value.
    #[error("the policy object has another kind")]
    PolicyKind,
    /// `approver:enterprise` holds another kind of value.
    #[error("approver:enterprise has another kind")]
    EnterpriseKind,
    /// The device's record of accepted commands does not parse.
    #[error("{path}: {source}")]
    CommandsFile {
        /// The file, relative to the device directory.
        path: String,
        /// Why.
        #[source]
        source: std::sync::Arc<serde_json::Error>,
    },
}

/// Where a signed-policy envelope is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeFault {
    /// No empty line ends the header.
    #[error("no header")]
    NoHeader,
    /// The header is not UTF-8.
    #[error("header not UTF-8")]
    HeaderNotUtf8,
    /// The first line is not the envelope's magic.
    #[error("first line is not {ENVELOPE_MAGIC}")]
    FirstLine,
    /// The signer line names another signer.
    #[error("signer is not approver:enterprise")]
    Signer,
    /// No `signature=` line with hex.
    #[error("no hex signature line")]
    NoSignature,
    /// More header lines than the three.
    #[error("extra header lines")]
    ExtraHeaderLines,
}

/// Where a command statement is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatementFault {
    /// The first line is not the statement's magic.
    #[error("the first line must be {COMMAND_MAGIC}")]
    FirstLine,
    /// A line is not the expected field.
    #[error("expected the line {0}=…")]
    ExpectedLine(&'static str),
    /// `action` is neither `enable` nor `disable`.
    #[error("action is neither enable nor disable")]
    Action,
    /// `until` is not a time.
    #[error("until is not a time")]
    Until,
    /// `counter` is not a number.
    #[error("counter is not a number")]
    Counter,
    /// `not-after` is not a time.
    #[error("not-after is not a time")]
    NotAfter,
    /// The text is not exactly what the statement encodes to.
    #[error("not in canonical form")]
    NotCanonical,
}

/// Why a signature is not accepted
/// ([`PolicyError::BadSignature`](super::PolicyError::BadSignature)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureIssue {
    /// The policy signature is not DER.
    #[error("the policy signature is not DER")]
    PolicyNotDer,
    /// The policy signature does not verify with the given key.
    #[error("the policy signature does not verify")]
    PolicyDoesNotVerify,
    /// The card does not verify the policy's signature with its enterprise key.
    #[error("the policy's signature does not verify with the card's enterprise key")]
    PolicyRefusedByCard,
    /// The card does not verify a command's signature with its enterprise key.
    #[error("the command's signature does not verify with the card's enterprise key")]
    CommandRefusedByCard,
    /// The policy or the enterprise key can be rewritten without an authority,
    /// so its signature proves nothing.
    #[error(
        "{what} is not protected by an authority: its ACL '{acl}' grants {right:?} to {principal}"
    )]
    Unprotected {
        /// The object ("the policy", "the enterprise key").
        what: &'static str,
        /// Its ACL.
        acl: Acl,
        /// The right granted.
        right: Right,
        /// To whom.
        principal: Principal,
    },
}

/// Why a signed command is refused
/// ([`PolicyError::CommandRefused`](super::PolicyError::CommandRefused)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The command is for another policy than the card's.
    #[error("it is for policy {command}, the card holds {card}")]
    OtherPolicy {
        /// The policy digest the command names.
        command: String,
        /// The digest of the card's policy.
        card: String,
    },
    /// The command is past its `not-after` time.
    #[error("it expired at {0}")]
    Expired(Timestamp),
    /// The policy does not manage the command's resource.
    #[error("the policy does not manage '{0}'")]
    Unmanaged(String),
    /// The counter is not above the last accepted one.
    #[error("counter {counter} is not above the last accepted {last} (replay)")]
    Replay {
        /// The command's counter.
        counter: u64,
        /// The last counter accepted on this device.
        last: u64,
    },
}

/// What the card does not hold
/// ([`PolicyError::Missing`](super::PolicyError::Missing)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MissingItem {
    /// No `approver:enterprise` on the card.
    #[error("the card holds no enterprise key (approver:enterprise)")]
    EnterpriseKey,
    /// No policy the device may read.
    #[error("the card holds no policy the device may read")]
    ReadablePolicy,
    /// No enterprise key the device may read.
    #[error("the card holds no enterprise key (approver:enterprise) the device may read")]
    ReadableEnterpriseKey,
}

/// Why a policy file does not parse or does not validate
/// ([`PolicyError::Invalid`](super::PolicyError::Invalid)).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyProblem {
    /// The text is not TOML, or not of the policy's shape (a missing,
    /// unknown or mistyped field).
    #[error(
        "{message}{}",
        if *bare_time {
            ": times and dates are quoted strings in a policy, e.g. to = \"06:00\""
        } else {
            ""
        }
    )]
    Toml {
        /// The TOML parser's description.
        message: String,
        /// The value is an unquoted time or date where a string is expected
        /// (`to = 06:00` instead of `to = "06:00"`).
        bare_time: bool,
    },
    /// `format` is not [`FORMAT`].
    #[error("format must be \"{FORMAT}\"")]
    Format {
        /// The value given.
        found: String,
    },
    /// `version` is not [`VERSION`].
    #[error("unsupported policy version {found} (this dmsc reads version {VERSION})")]
    Version {
        /// The version given.
        found: i64,
    },
    /// `serial` is negative.
    #[error("serial must be 0 or more")]
    NegativeSerial {
        /// The serial given.
        found: i64,
    },
    /// `name` is empty or only blanks.
    #[error("name must not be empty")]
    EmptyName,
    /// A time zone (of the policy or of a rule) is not an IANA name.
    #[error("unknown time zone '{name}' (use an IANA name such as Europe/Paris)")]
    UnknownTimeZone {
        /// The name given.
        name: String,
    },
    /// `declare` lists a built-in resource or an `app:` one.
    #[error("'{name}' is built in; declare only other resources")]
    DeclaredBuiltIn {
        /// The resource.
        name: String,
    },
    /// `declare` lists a name that is not 1-64 of `a-z 0-9 . _ -`.
    #[error("declared resource '{name}': use 1-64 of a-z 0-9 . _ -")]
    DeclaredName {
        /// The name given.
        name: String,
    },
    /// `declare` lists a resource twice.
    #[error("'{name}' is declared twice")]
    DeclaredTwice {
        /// The resource.
        name: String,
    },
    /// A resource is neither built in, nor `app:<id>`, nor declared.
    #[error(
        "unknown resource '{name}' (built in: {}, app:<id>; others must be listed in `declare`)",
        BUILTIN_RESOURCES.join(", ")
    )]
    UnknownResource {
        /// The resource named.
        name: String,
    },
    /// A `[defaults]` value is neither `enabled` nor `disabled`.
    #[error("'{value}' is not enabled or disabled")]
    DefaultState {
        /// The value given.
        value: String,
    },
    /// A site's name is not 1-64 of `A-Z a-z 0-9 . _ -`.
    #[error("site name: use 1-64 of A-Z a-z 0-9 . _ -")]
    SiteName {
        /// The name given.
        name: String,
    },
    /// A site is neither exactly a circle nor exactly a polygon.
    #[error(
        "a site is either a circle (center = [lat, lon], radius_m = M) or a polygon (polygon = [[lat, lon], ...])"
    )]
    SiteShape,
    /// A position is out of the WGS84 range (or not a number).
    #[error(
        "a position is [latitude, longitude] in degrees: latitude -90..90, longitude -180..180"
    )]
    Position {
        /// The latitude given, in degrees.
        latitude: f64,
        /// The longitude given, in degrees.
        longitude: f64,
    },
    /// A circle's radius is not more than 0 and at most 1000000 metres.
    #[error("radius_m must be more than 0 and at most 1000000")]
    Radius {
        /// The radius given, in metres.
        radius_m: f64,
    },
    /// A polygon has fewer than 3 points.
    #[error("a polygon needs at least 3 points")]
    TooFewPoints {
        /// The number of points given.
        points: usize,
    },
    /// A polygon spans 180 degrees of longitude or more, or has no area.
    #[error("a polygon must span less than 180 degrees of longitude and have a non-zero area")]
    PolygonShape,
    /// A rule's id is not 1-64 of `A-Z a-z 0-9 . _ -`.
    #[error("rule id: use 1-64 of A-Z a-z 0-9 . _ -")]
    RuleId {
        /// The id given.
        id: String,
    },
    /// Another rule with the same id comes earlier in the file.
    #[error("a rule with this id comes earlier")]
    DuplicateRuleId {
        /// The id.
        id: String,
    },
    /// A rule's `effect` is neither `enable` nor `disable`.
    #[error("effect '{effect}' is neither enable nor disable")]
    Effect {
        /// The effect given.
        effect: String,
    },
    /// A rule's `resources` is empty.
    #[error("a rule names at least one resource")]
    NoResources,
    /// A rule lists a resource twice.
    #[error("'{name}' is listed twice")]
    ResourceTwice {
        /// The resource.
        name: String,
    },
    /// A rule's `days` is empty.
    #[error("days must name at least one day")]
    NoDays,
    /// An entry of `days` is not a day, a range of days or `all`.
    #[error(
        "'{day}' is not a day: use mon, tue, wed, thu, fri, sat, sun, a range such as mon-fri, or all"
    )]
    Day {
        /// The entry given.
        day: String,
    },
    /// `from` or `to` is not a time of day `HH:MM` (00:00 to 24:00).
    #[error("'{time}' is not a time of day HH:MM (00:00 to 24:00)")]
    TimeOfDay {
        /// The value given.
        time: String,
    },
    /// `from` is 24:00.
    #[error("from must be before 24:00")]
    FromEndOfDay,
    /// `from` and `to` are the same time of day (or both midnight).
    #[error("from and to are equal: for the whole day, leave both out")]
    FromEqualsTo {
        /// The time of day, in minutes after local midnight.
        minutes: u16,
    },
    /// A bound of `dates` is not a date `YYYY-MM-DD`.
    #[error("'{date}' is not a date YYYY-MM-DD")]
    Date {
        /// The value given.
        date: String,
    },
    /// `dates.to` is before `dates.from`.
    #[error("dates: to comes before from")]
    DatesReversed {
        /// The first date given.
        from: Date,
        /// The last date given.
        to: Date,
    },
    /// `inside` or `outside` names a site that `[sites]` does not define.
    #[error("no site named '{name}' in [sites]")]
    UnknownSite {
        /// The site named.
        name: String,
    },
    /// An entry of `networks` is empty.
    #[error("a network name must not be empty")]
    EmptyNetwork,
    /// `when_unknown` is neither `skip` nor `apply`.
    #[error("when_unknown '{value}' is neither skip nor apply")]
    WhenUnknown {
        /// The value given.
        value: String,
    },
    /// `when_unknown` is given on a rule without a location or network condition.
    #[error("when_unknown needs a location (inside/outside) or network condition")]
    WhenUnknownWithoutCondition,
}
