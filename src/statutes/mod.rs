//! The law as dated data: per destination, each rule with the dates it is in
//! force and its legal source. Nothing here decides a call: [`crate::policy`]
//! compiles these statutes, the configuration's `[destination.XX]`
//! overrides and each campaign's settings into the effective rules the
//! decision path reads.
//!
//! One file per country; territories a country's law governs are mapped
//! to its statute (`territories.rs`). A destination without a statute here
//! is opt-in (consent required) and has no calling window, caps or registry.
//!
//! Dates are days of the destination's civil calendar (`from` inclusive,
//! `until` exclusive); [`crate::policy`] turns them into instants at
//! midnight in the destination's main time zone.

pub mod holidays;
pub mod territories;

mod de;
mod es;
mod fr;
mod gb;
mod it;
mod pl;
mod ro;
pub mod us;

use std::sync::LazyLock;

use jiff::civil::Date;

use crate::calling::{AttemptLimit, WeeklyHours};
use crate::model::{Purpose, RegistryKind};
pub use holidays::{Holiday, HolidayDate};

/// A rule of a statute, in force over `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<T> {
    pub value: T,
    /// First day in force; `None`: since before any date the product handles.
    pub from: Option<Date>,
    /// First day no longer in force; `None`: until further notice.
    pub until: Option<Date>,
    /// The legal source (instrument and article), with its verification status.
    pub source: &'static str,
}

impl<T> Rule<T> {
    /// A rule in force without a known start or end.
    pub fn always(value: T, source: &'static str) -> Rule<T> {
        Rule {
            value,
            from: None,
            until: None,
            source,
        }
    }

    /// A rule in force from `from`.
    pub fn since(from: Date, value: T, source: &'static str) -> Rule<T> {
        Rule {
            value,
            from: Some(from),
            until: None,
            source,
        }
    }

    /// A rule in force until the day before `until`.
    pub fn until(until: Date, value: T, source: &'static str) -> Rule<T> {
        Rule {
            value,
            from: None,
            until: Some(until),
            source,
        }
    }

    /// Whether the rule is in force on `day`.
    pub fn in_force_on(&self, day: Date) -> bool {
        self.from.is_none_or(|f| f <= day) && self.until.is_none_or(|u| day < u)
    }
}

/// The rule of `rules` in force on `day` (the last listed wins an overlap).
pub fn in_force<T>(rules: &[Rule<T>], day: Date) -> Option<&Rule<T>> {
    rules.iter().rev().find(|r| r.in_force_on(day))
}

/// A period after an event: calendar months or days, or the earlier end of
/// both (a period in days narrowing one in months).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Months(u32),
    Days(u32),
    /// Whichever of the two ends first.
    Earlier {
        months: u32,
        days: u32,
    },
}

impl Period {
    /// The instant `self` after `from`. Months are counted date to date,
    /// a day missing at the end being the month's last (29 February plus
    /// a year: 28 February), on the earliest of the dates `from` falls on
    /// anywhere (UTC-12 to UTC+14): counted on the UTC date alone, a
    /// period beginning in the first hour of 29 February in Madrid (still
    /// the 28th in UTC) ended a day late (found by review).
    pub fn after(self, from: jiff::Timestamp) -> jiff::Timestamp {
        match self {
            Period::Months(m) => {
                // On days 2 to 27 (UTC) the start's date anywhere is in the
                // same month and before its 29th: no month end to clamp,
                // every date gives the same instant (CheckCall's path reads
                // this for consents and relationships: one addition there).
                let months = jiff::Span::new().months(i64::from(m));
                if (2..=27).contains(&from.to_zoned(jiff::tz::TimeZone::UTC).day()) {
                    return add_at_offset(from, 0, months);
                }
                earliest_months_after(from, months)
            }
            // Days are 24 hours wherever the offset is fixed.
            Period::Days(d) => add_at_offset(from, 0, jiff::Span::new().days(i64::from(d))),
            Period::Earlier { months, days } => Period::Months(months)
                .after(from)
                .min(Period::Days(days).after(from)),
        }
    }

    fn parts(self) -> (Option<u32>, Option<u32>) {
        match self {
            Period::Months(m) => (Some(m), None),
            Period::Days(d) => (None, Some(d)),
            Period::Earlier { months, days } => (Some(months), Some(days)),
        }
    }

    /// The shorter of two optional periods, from any event: `None` (no
    /// exemption) is shortest; months and days are kept both and the
    /// earlier end applies (a month is not a fixed number of days).
    pub fn shorter(a: Option<Period>, b: Option<Period>) -> Option<Period> {
        let (a, b) = (a?.parts(), b?.parts());
        let min = |x: Option<u32>, y: Option<u32>| match (x, y) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        Some(match (min(a.0, b.0), min(a.1, b.1)) {
            // A month has 28 to 31 days: keep both only when that decides nothing.
            (Some(months), Some(days)) if u64::from(days) <= 28 * u64::from(months) => {
                Period::Days(days)
            }
            (Some(months), Some(days)) if u64::from(days) >= 31 * u64::from(months) => {
                Period::Months(months)
            }
            (Some(months), Some(days)) => Period::Earlier { months, days },
            (Some(months), None) => Period::Months(months),
            (None, Some(days)) => Period::Days(days),
            (None, None) => Period::Days(0),
        })
    }
}

/// `from` plus `span` counted on the civil date and time at a fixed UTC
/// offset of `offset_hours`.
fn add_at_offset(from: jiff::Timestamp, offset_hours: i8, span: jiff::Span) -> jiff::Timestamp {
    let zone = jiff::tz::TimeZone::fixed(jiff::tz::offset(offset_hours));
    from.to_zoned(zone)
        .checked_add(span)
        .map(|z| z.timestamp())
        .unwrap_or(jiff::Timestamp::MAX)
}

/// `from` plus `months` on the earliest of the dates it falls on anywhere
/// (UTC-12, UTC, UTC+14 cover the previous, the same and the next day).
fn earliest_months_after(from: jiff::Timestamp, months: jiff::Span) -> jiff::Timestamp {
    [-12, 0, 14]
        .into_iter()
        .map(|hours| add_at_offset(from, hours, months))
        .min()
        .unwrap_or(jiff::Timestamp::MAX)
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Period::Months(m) => write!(f, "{m} months"),
            Period::Days(d) => write!(f, "{d} days"),
            Period::Earlier { months, days } => {
                write!(f, "{months} months or {days} days, whichever ends first")
            }
        }
    }
}

/// What lifts a registry's DENY for a controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Exemptions {
    /// Customers: ongoing, or this long after the last purchase, delivery or
    /// payment (`ended_at`); `None` = no customer exemption.
    pub customer: Option<Period>,
    /// Inquiries: this long after the inquiry; `None` = no inquiry exemption.
    pub inquiry: Option<Period>,
    /// A consent to this controller for the purpose lifts the registry.
    pub consent: bool,
    /// ... only a consent that is the consumer's signed written agreement
    /// (`method` = `written_agreement`): the US national DNC.
    pub consent_in_writing: bool,
    /// Italy policy (off by default): a consent counts over an RPO DENY only
    /// if given after the number was first seen not cleared for the controller.
    pub consent_after_registration: bool,
}

impl Exemptions {
    /// The exemptions both allow (a configuration can only narrow the law's).
    pub fn narrowed_by(self, other: Exemptions) -> Exemptions {
        Exemptions {
            customer: Period::shorter(self.customer, other.customer),
            inquiry: Period::shorter(self.inquiry, other.inquiry),
            consent: self.consent && other.consent,
            consent_in_writing: self.consent_in_writing || other.consent_in_writing,
            consent_after_registration: other.consent_after_registration,
        }
    }
}

/// A national registry the statute requires to be consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryRequirement {
    /// Short name (`RPO`, `DNC`, `TPS`, `Bloctel`).
    pub name: &'static str,
    pub kind: RegistryKind,
    /// How long one consultation may be relied on.
    pub valid_days: u32,
    /// What lifts the registry's DENY.
    pub exemptions: Exemptions,
}

/// Whether calls need the person's consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentRegime {
    /// Allowed unless the person opted out (through the national registry).
    OptOut,
    /// Allowed only with a prior, provable consent.
    OptIn,
}

/// The consent rule of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentRule {
    pub regime: ConsentRegime,
    /// Opt-in: a customer relationship that stands in for consent, ongoing
    /// or this long after it ended; `None` = none does.
    pub customer_exemption: Option<Period>,
    /// A consent older than this no longer counts (it must be renewed).
    pub consent_max_age: Option<Period>,
    /// The exclusion list the law has consulted before a call without
    /// consent (one a customer relationship stands in for): such a call
    /// needs a block-list of the destination consulted (Spain: Lista
    /// Robinson, LOPDGDD art. 23.4).
    pub stand_in_needs_list: Option<&'static str>,
}

impl ConsentRule {
    pub const OPT_OUT: ConsentRule = ConsentRule {
        regime: ConsentRegime::OptOut,
        customer_exemption: None,
        consent_max_age: None,
        stand_in_needs_list: None,
    };
    pub const OPT_IN: ConsentRule = ConsentRule {
        regime: ConsentRegime::OptIn,
        customer_exemption: None,
        consent_max_age: None,
        stand_in_needs_list: None,
    };
}

/// Kinds of number a caller ID can be (libphonenumber's types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CliType {
    FixedLine,
    Mobile,
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    Voip,
    PersonalNumber,
    Pager,
    Uan,
    Voicemail,
    Unknown,
}

impl CliType {
    pub fn of(kind: phonenumber::Type) -> CliType {
        use phonenumber::Type;
        match kind {
            Type::FixedLine => CliType::FixedLine,
            Type::Mobile => CliType::Mobile,
            Type::FixedLineOrMobile => CliType::FixedLineOrMobile,
            Type::TollFree => CliType::TollFree,
            Type::PremiumRate => CliType::PremiumRate,
            Type::SharedCost => CliType::SharedCost,
            Type::Voip => CliType::Voip,
            Type::PersonalNumber => CliType::PersonalNumber,
            Type::Pager => CliType::Pager,
            Type::Uan => CliType::Uan,
            Type::Voicemail => CliType::Voicemail,
            _ => CliType::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CliType::FixedLine => "fixed-line",
            CliType::Mobile => "mobile",
            CliType::FixedLineOrMobile => "fixed-line or mobile",
            CliType::TollFree => "toll-free",
            CliType::PremiumRate => "premium-rate",
            CliType::SharedCost => "shared-cost",
            CliType::Voip => "VoIP",
            CliType::PersonalNumber => "personal",
            CliType::Pager => "pager",
            CliType::Uan => "UAN",
            CliType::Voicemail => "voicemail",
            CliType::Unknown => "unknown-type",
        }
    }
}

/// A national prefix reserved for calls of some purposes (IT 0843/0844).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedPrefix {
    /// National significant digits, trunk `0` included as dialled (`0844`).
    pub prefix: &'static str,
    pub purposes: &'static [Purpose],
    /// The national digits a number of the range has, prefix included
    /// (Spain's 400 range: exactly 9; Italy's: 6 to 12, as dialled).
    pub digits: (usize, usize),
}

/// Caller-ID rules. A withheld or unparseable caller ID is refused
/// everywhere; these add what a destination's law says on top.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerIdRules {
    /// Prefixes reserved by purpose; a caller ID in one of them is allowed
    /// for those purposes without being declared, refused for the others.
    pub reserved_prefixes: &'static [ReservedPrefix],
    /// Purposes whose calls must present a number in a prefix reserved
    /// for them (Spain's commercial range): any other caller ID is refused.
    pub reserved_required: &'static [Purpose],
    /// The only number types that may be presented; `None`: any type.
    pub permitted_types: Option<&'static [CliType]>,
    /// Number types that may not be presented.
    pub forbidden_types: &'static [CliType],
    /// Only numbers of the destination's own country may be presented.
    pub domestic_only: bool,
}

impl CallerIdRules {
    /// Whether a declared caller ID of `kind` and region `cli_region` may be
    /// presented on calls to `destination`.
    pub fn permits(&self, kind: CliType, cli_region: Option<&str>, destination: &str) -> bool {
        self.permitted_types.is_none_or(|p| p.contains(&kind))
            && !self.forbidden_types.contains(&kind)
            && (!self.domestic_only || cli_region == Some(destination))
    }
}

/// Rules of one state (US) on top of the national ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStatute {
    /// USPS code (`FL`).
    pub code: &'static str,
    pub hours: Vec<Rule<WeeklyHours>>,
    pub attempt_caps: Vec<Rule<AttemptLimit>>,
}

/// The statute of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statute {
    /// ISO 3166 region code.
    pub region: &'static str,
    /// The zone whose midnight starts and ends each dated rule.
    pub zone: &'static str,
    /// The national registry to consult; `None` in force = no registry duty.
    pub registry: Vec<Rule<Option<RegistryRequirement>>>,
    pub consent: Vec<Rule<ConsentRule>>,
    /// The statutory calling window; none in force = no window.
    pub hours: Vec<Rule<WeeklyHours>>,
    /// Public holidays (for the window), each with the years it exists.
    pub holidays: Vec<Holiday>,
    /// Caps on calls to one number by one controller; all in force apply.
    pub attempt_caps: Vec<Rule<AttemptLimit>>,
    pub caller_id: Vec<Rule<CallerIdRules>>,
    pub states: Vec<StateStatute>,
}

impl Statute {
    fn new(region: &'static str, zone: &'static str) -> Statute {
        Statute {
            region,
            zone,
            registry: Vec::new(),
            consent: Vec::new(),
            hours: Vec::new(),
            holidays: Vec::new(),
            attempt_caps: Vec::new(),
            caller_id: Vec::new(),
            states: Vec::new(),
        }
    }

    /// Every day on which one of the statute's rules starts or ends.
    pub fn boundaries(&self) -> Vec<Date> {
        fn edges<T>(rules: &[Rule<T>], out: &mut Vec<Date>) {
            for rule in rules {
                out.extend(rule.from);
                out.extend(rule.until);
            }
        }
        let mut out = Vec::new();
        edges(&self.registry, &mut out);
        edges(&self.consent, &mut out);
        edges(&self.hours, &mut out);
        edges(&self.attempt_caps, &mut out);
        edges(&self.caller_id, &mut out);
        for state in &self.states {
            edges(&state.hours, &mut out);
            edges(&state.attempt_caps, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }
}

static STATUTES: LazyLock<Vec<Statute>> = LazyLock::new(|| {
    let mut statutes = vec![
        it::statute(),
        fr::statute(),
        es::statute(),
        de::statute(),
        gb::statute(),
        us::statute(),
        pl::statute(),
        ro::statute(),
    ];
    statutes.extend(us::territory_statutes());
    statutes.extend(fr::collectivity_statutes());
    statutes
});

/// The statute of a destination, if the product carries one: its own, or
/// that of the country whose law governs it (a French overseas department,
/// see [`territories`]).
pub fn statute(region: &str) -> Option<&'static Statute> {
    let governing = territories::territory(region).map_or(region, |t| t.governed_by);
    STATUTES.iter().find(|s| s.region == governing)
}

/// The main time zone of a destination with a statute: the statute's, or
/// the territory's own (Réunion's, not Paris's).
pub fn main_zone(region: &str) -> Option<&'static str> {
    match territories::territory(region) {
        Some(territory) => Some(territory.zone),
        None => statute(region).map(|s| s.zone),
    }
}

/// The zone whose midnight begins a dated rule of a destination (a
/// statute's change, an override's `from`): [`main_zone`], or for a
/// destination without a statute the one clock of its calling code. `None`
/// where its numbers run on several clocks: no one midnight is the day's
/// start there. (Taken as UTC, a `[destination.NL] from` began an hour
/// late, Japan's nine hours late; found by review.)
pub fn dated_zone(region: crate::number::Region) -> Option<&'static str> {
    main_zone(region.as_str()).or_else(|| crate::calling::zones::one_clock(region.calling_code()))
}

/// Every statute the product carries.
pub fn all() -> &'static [Statute] {
    &STATUTES
}

/// Destinations that had no statute before the US territories and the
/// French collectivities got theirs (27 Nov 2026): an override of their
/// calling hours must list every day (see `config::validate`).
pub const NEWLY_GOVERNED: [&str; 8] = ["PR", "VI", "GU", "AS", "MP", "BL", "MF", "PM"];

/// What applies to a destination without a statute in the product.
pub const NO_STATUTE: &str =
    "no statute for this destination in dialgate: opt-in (consent required), no window, no cap";

#[cfg(test)]
mod tests;
