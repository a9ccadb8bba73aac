//! Domain vocabulary shared by rules, storage and adapters: verdicts, reason
//! codes and purposes. The wire enums in `proto` map one to one onto these.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Kind of a registry: what its file lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    /// The file lists numbers CLEARED for one controller (IT RPO, FR Bloctel).
    Allowlist,
    /// The file lists REGISTERED numbers (US DNC, UK TPS).
    Blocklist,
}

impl fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryKind::Allowlist => "allowlist",
            RegistryKind::Blocklist => "blocklist",
        })
    }
}

/// Outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "ALLOW",
            Verdict::Deny => "DENY",
        }
    }
}

/// Why a decision was taken; the names are those of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReasonCode {
    InvalidNumber,
    UnknownCampaign,
    DestinationNotAllowed,
    RegistryListed,
    RegistryNotCovered,
    RegistryStale,
    RegistryUnavailable,
    Suppressed,
    NoConsent,
    CallerIdMissing,
    CallerIdNotAllowed,
    OutsideCallingHours,
    AttemptLimit,
    Consent,
    Relationship,
    RegistryClear,
}

impl ReasonCode {
    /// Every code, in wire order.
    pub const ALL: [ReasonCode; 16] = [
        ReasonCode::InvalidNumber,
        ReasonCode::UnknownCampaign,
        ReasonCode::DestinationNotAllowed,
        ReasonCode::RegistryListed,
        ReasonCode::RegistryNotCovered,
        ReasonCode::RegistryStale,
        ReasonCode::RegistryUnavailable,
        ReasonCode::Suppressed,
        ReasonCode::NoConsent,
        ReasonCode::CallerIdMissing,
        ReasonCode::CallerIdNotAllowed,
        ReasonCode::OutsideCallingHours,
        ReasonCode::AttemptLimit,
        ReasonCode::Consent,
        ReasonCode::Relationship,
        ReasonCode::RegistryClear,
    ];

    /// The contract's name of the code (without the `REASON_CODE_` prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::InvalidNumber => "INVALID_NUMBER",
            ReasonCode::UnknownCampaign => "UNKNOWN_CAMPAIGN",
            ReasonCode::DestinationNotAllowed => "DESTINATION_NOT_ALLOWED",
            ReasonCode::RegistryListed => "REGISTRY_LISTED",
            ReasonCode::RegistryNotCovered => "REGISTRY_NOT_COVERED",
            ReasonCode::RegistryStale => "REGISTRY_STALE",
            ReasonCode::RegistryUnavailable => "REGISTRY_UNAVAILABLE",
            ReasonCode::Suppressed => "SUPPRESSED",
            ReasonCode::NoConsent => "NO_CONSENT",
            ReasonCode::CallerIdMissing => "CALLER_ID_MISSING",
            ReasonCode::CallerIdNotAllowed => "CALLER_ID_NOT_ALLOWED",
            ReasonCode::OutsideCallingHours => "OUTSIDE_CALLING_HOURS",
            ReasonCode::AttemptLimit => "ATTEMPT_LIMIT",
            ReasonCode::Consent => "CONSENT",
            ReasonCode::Relationship => "RELATIONSHIP",
            ReasonCode::RegistryClear => "REGISTRY_CLEAR",
        }
    }

    /// Index into `ALL`, for counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// True for the codes that make a decision a DENY.
    pub fn is_deny(self) -> bool {
        !matches!(
            self,
            ReasonCode::Consent | ReasonCode::Relationship | ReasonCode::RegistryClear
        )
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason of a decision, with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub detail: String,
}

impl Reason {
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Reason {
        Reason {
            code,
            detail: detail.into(),
        }
    }
}

/// Purpose of a campaign or a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Marketing,
    MarketResearch,
    Statistical,
    /// Profiling and segmentation: a consent purpose only (no campaign
    /// calls for profiling); a campaign targeting a profiled segment needs
    /// it besides its own purpose's consent.
    Profiling,
}

impl Purpose {
    /// Parses the configuration spelling (`marketing`, `market_research`,
    /// `statistical`, `profiling`).
    pub fn from_config(text: &str) -> Option<Purpose> {
        match text {
            "marketing" => Some(Purpose::Marketing),
            "market_research" => Some(Purpose::MarketResearch),
            "statistical" => Some(Purpose::Statistical),
            "profiling" => Some(Purpose::Profiling),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Marketing => "marketing",
            Purpose::MarketResearch => "market_research",
            Purpose::Statistical => "statistical",
            Purpose::Profiling => "profiling",
        }
    }
}

/// Parses an instant written as RFC 3339 (`2026-11-23T10:00:00Z`) or as a
/// date alone (`2026-11-23`, midnight UTC), as the commands and CSV files
/// accept. A date and time without an offset is refused, not read as its
/// date (found by review: jiff's date parser takes `2027-06-30 23:59:59`
/// and drops the time, so an opt-out's expiry written so ended a day
/// early).
pub fn parse_instant(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(instant) = text.parse::<jiff::Timestamp>() {
        return Some(instant);
    }
    let date = parse_date(text)?;
    Some(date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp())
}

/// Parses a date written exactly `YYYY-MM-DD`. jiff's own parser also
/// takes a date and time (`2026-06-30T12:00:00+02:00`, `2026-06-30
/// 18:00`, `20260630`) and keeps the date alone: a supplier contract
/// ending at noon read as ending at that day's end (found by review).
pub fn parse_date(text: &str) -> Option<jiff::civil::Date> {
    let bytes = text.as_bytes();
    let date_alone = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    date_alone.then(|| text.parse().ok()).flatten()
}

/// [`parse_date`] for command-line arguments.
///
/// # Errors
/// Not a date written `YYYY-MM-DD`.
pub fn parse_date_arg(text: &str) -> Result<jiff::civil::Date, String> {
    parse_date(text).ok_or_else(|| format!("{text:?}: expected a date written YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A date and time without an offset (an SQL or CRM export's usual
    /// form) is refused: read as its date, an opt-out's expiry ended up to
    /// a day early (found by review).
    #[test]
    fn test_an_instant_without_an_offset_is_refused() {
        for text in [
            "2027-06-30 23:59:59",
            "2027-06-30T23:59:59",
            "2027-06-30T18:00:00[America/New_York]",
            "2027-06-30 ",
            "2027-6-30",
            "20270630",
        ] {
            assert_eq!(parse_instant(text), None, "{text}");
        }
        assert_eq!(
            parse_instant("2027-06-30"),
            Some("2027-06-30T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            parse_instant("2027-06-30T23:59:59-04:00"),
            Some("2027-07-01T03:59:59Z".parse().unwrap())
        );
        assert_eq!(
            parse_instant("2027-06-30T18:00:00-04:00[America/New_York]"),
            Some("2027-06-30T22:00:00Z".parse().unwrap())
        );
    }

    /// A configuration's or a command's date is a date alone: a date and
    /// time is refused, not cut to its date (found by review).
    #[test]
    fn test_a_date_is_written_yyyy_mm_dd() {
        assert_eq!(
            parse_date("2026-03-01"),
            Some(jiff::civil::date(2026, 3, 1))
        );
        for text in [
            "2026-03-01T23:00:00-05:00",
            "2026-03-01 18:00",
            "20260301",
            "2026-3-1",
            "2026-02-30",
        ] {
            assert_eq!(parse_date(text), None, "{text}");
        }
    }
}
