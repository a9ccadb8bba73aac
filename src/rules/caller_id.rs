//! Caller-ID (CLI) rule: a call must present an identifiable number that the
//! campaign declared, or (Italy) a number in the prefix reserved for its
//! purpose: 0844 for marketing and market research, 0843 for statistical
//! surveys (AGCOM 156/18/CIR). Those prefixes are not in libphonenumber's
//! metadata, so they are recognised here by prefix and length.

use crate::config::CampaignConfig;
use crate::model::{Purpose, Reason, ReasonCode};
use crate::number;

/// Values dialers send when the caller ID is hidden.
const WITHHELD: [&str; 7] = [
    "anonymous",
    "private",
    "withheld",
    "restricted",
    "unknown",
    "unavailable",
    "blocked",
];

/// Checks the presented caller ID; `None` when it is allowed.
pub fn check_caller_id(raw: &str, campaign: &CampaignConfig) -> Option<Reason> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Some(Reason::new(
            ReasonCode::CallerIdMissing,
            "no caller ID presented",
        ));
    }
    if WITHHELD.iter().any(|w| trimmed.eq_ignore_ascii_case(w)) {
        return Some(Reason::new(
            ReasonCode::CallerIdMissing,
            format!("caller ID withheld ({trimmed:?})"),
        ));
    }
    if let Some(prefix) = italian_reserved_prefix(trimmed, campaign.default_region.as_str() == "IT")
    {
        let allowed = match prefix {
            "0844" => matches!(
                campaign.purpose,
                Purpose::Marketing | Purpose::MarketResearch
            ),
            _ => campaign.purpose == Purpose::Statistical,
        };
        return (!allowed).then(|| {
            Reason::new(
                ReasonCode::CallerIdNotAllowed,
                format!(
                    "prefix {prefix} is reserved for {}, the campaign's purpose is {}",
                    if prefix == "0844" {
                        "marketing and market research"
                    } else {
                        "statistical surveys"
                    },
                    campaign.purpose.as_str()
                ),
            )
        });
    }
    match number::normalize_any(trimmed, campaign.default_region) {
        Err(err) => Some(Reason::new(
            ReasonCode::CallerIdMissing,
            format!("caller ID cannot be used: {err}"),
        )),
        Ok(cli) if campaign.caller_ids.contains(&cli.e164) => None,
        Ok(cli) => Some(Reason::new(
            ReasonCode::CallerIdNotAllowed,
            format!(
                "{} is not a declared caller ID of campaign {}",
                cli.e164, campaign.id
            ),
        )),
    }
}

/// `Some("0843" | "0844")` when the caller ID is an Italian number in a
/// reserved prefix: `+39 0844...`, `0039 0844...`, or national `0844...`
/// when the campaign's region is Italy. 6 to 12 national digits.
fn italian_reserved_prefix(cli: &str, national_is_italian: bool) -> Option<&'static str> {
    if !cli
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')' | '/'))
    {
        return None;
    }
    let compact: String = cli
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    let national = if let Some(rest) = compact.strip_prefix("+39") {
        rest
    } else if let Some(rest) = compact.strip_prefix("0039") {
        rest
    } else if national_is_italian && compact.starts_with('0') && !compact.starts_with("00") {
        compact.as_str()
    } else {
        return None;
    };
    if !(6..=12).contains(&national.len()) || national.contains('+') {
        return None;
    }
    ["0843", "0844"]
        .into_iter()
        .find(|p| national.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::Region;

    fn campaign(purpose: Purpose) -> CampaignConfig {
        CampaignConfig {
            id: "c".into(),
            controller: "acme".into(),
            purpose,
            default_region: Region::parse("IT").unwrap(),
            destinations: vec![Region::parse("IT").unwrap()],
            consent_required: false,
            caller_ids: vec!["+390212345678".into()],
            calling_hours: None,
            attempt_limit: None,
        }
    }

    fn code(raw: &str, purpose: Purpose) -> Option<ReasonCode> {
        check_caller_id(raw, &campaign(purpose)).map(|r| r.code)
    }

    #[test]
    fn test_caller_id_table() {
        use Purpose::*;
        use ReasonCode::*;
        let cases = [
            ("", Marketing, Some(CallerIdMissing)),
            ("  ", Marketing, Some(CallerIdMissing)),
            ("anonymous", Marketing, Some(CallerIdMissing)),
            ("Private", Marketing, Some(CallerIdMissing)),
            ("WITHHELD", Marketing, Some(CallerIdMissing)),
            ("restricted", Marketing, Some(CallerIdMissing)),
            ("abc", Marketing, Some(CallerIdMissing)),
            ("12", Marketing, Some(CallerIdMissing)),
            ("+390212345678", Marketing, None),
            ("02 1234 5678", Marketing, None),
            ("0039 02 12345678", Marketing, None),
            ("+390287654321", Marketing, Some(CallerIdNotAllowed)),
            ("0844 123456", Marketing, None),
            ("+39 0844 123456", MarketResearch, None),
            ("0844123456", Statistical, Some(CallerIdNotAllowed)),
            ("0843 123456", Statistical, None),
            ("0039 0843 1234567", Statistical, None),
            ("0843123456", Marketing, Some(CallerIdNotAllowed)),
            ("08441", Marketing, Some(CallerIdMissing)),
        ];
        for (raw, purpose, expected) in cases {
            assert_eq!(code(raw, purpose), expected, "{raw:?} for {purpose:?}");
        }
    }

    #[test]
    fn test_national_0844_needs_an_italian_campaign() {
        let mut c = campaign(Purpose::Marketing);
        c.default_region = Region::parse("FR").unwrap();
        assert_eq!(italian_reserved_prefix("0844123456", false), None);
        assert_eq!(
            italian_reserved_prefix("+39 0844 123456", false),
            Some("0844")
        );
        assert!(check_caller_id("0844123456", &c).is_some());
    }
}
