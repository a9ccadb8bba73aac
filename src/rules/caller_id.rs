//! Caller-ID (CLI) rule: a call must present an identifiable number that the
//! campaign declared and that the destination's law lets a call present
//! (Spain: no mobile numbers since 7 June 2025; France: none since 2023;
//! Italy: geographic and mobile only), or a number in a prefix the
//! destination reserves for the campaign's purpose (Italy: 0844 marketing and
//! market research, 0843 statistical surveys). Reserved prefixes are not in
//! libphonenumber's metadata, so they are recognised by prefix and length.

use crate::config::CampaignConfig;
use crate::model::{Reason, ReasonCode};
use crate::number;
use crate::policy::Era;
use crate::statutes::ReservedPrefix;

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

/// Checks the presented caller ID under the era's law (`None`: the campaign
/// may not call there; only the declared numbers count); `None` when allowed.
pub fn check_caller_id(raw: &str, campaign: &CampaignConfig, era: Option<&Era>) -> Option<Reason> {
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
    if let Some(era) = era
        && let Some(prefix) = reserved_prefix(
            trimmed,
            era.caller_id.value.reserved_prefixes,
            era.region.calling_code(),
            campaign.default_region == era.region,
        )
    {
        return (!prefix.purposes.contains(&campaign.purpose)).then(|| {
            Reason::new(
                ReasonCode::CallerIdNotAllowed,
                format!(
                    "prefix {} is reserved for {}, the campaign's purpose is {} ({})",
                    prefix.prefix,
                    prefix
                        .purposes
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(" and "),
                    campaign.purpose.as_str(),
                    era.caller_id.origin.describe()
                ),
            )
        });
    }
    // A purpose whose calls must present a number of a reserved prefix
    // (Spain's 400 range for commercial calls, from 28 Dec 2026): no other
    // caller ID, declared or not, may be presented.
    if let Some(era) = era
        && era
            .caller_id
            .value
            .reserved_required
            .contains(&campaign.purpose)
    {
        return Some(Reason::new(
            ReasonCode::CallerIdNotAllowed,
            format!(
                "a {} call to {} must present a number in the prefix reserved for it ({}); {trimmed:?} is not in it ({})",
                campaign.purpose.as_str(),
                era.region,
                reserved_for(era.caller_id.value.reserved_prefixes, campaign.purpose),
                era.caller_id.origin.describe()
            ),
        ));
    }
    let cli = match number::normalize_any(trimmed, campaign.default_region) {
        Err(err) => {
            return Some(Reason::new(
                ReasonCode::CallerIdMissing,
                format!("caller ID cannot be used: {err}"),
            ));
        }
        Ok(cli) => cli,
    };
    let declared = campaign.caller_ids.contains(&cli.e164);
    if !declared {
        return Some(Reason::new(
            ReasonCode::CallerIdNotAllowed,
            format!(
                "{} is not a declared caller ID of campaign {}",
                cli.e164, campaign.id
            ),
        ));
    }
    match era.and_then(|era| {
        era.caller_ids
            .iter()
            .find(|c| c.e164 == cli.e164)
            .map(|c| (era, c))
    }) {
        Some((era, declared)) if !declared.permitted => Some(Reason::new(
            ReasonCode::CallerIdNotAllowed,
            format!(
                "{} is a {}{} number: the law of {} does not let a call present it ({})",
                cli.e164,
                declared
                    .region
                    .as_deref()
                    .map(|r| format!("{r} "))
                    .unwrap_or_default(),
                declared.kind.as_str(),
                era.region,
                era.caller_id.origin.describe()
            ),
        )),
        _ => None,
    }
}

/// Screening, which has no caller ID: whether the campaign could present
/// any in the era, a declared number the law lets a call present or one in
/// a prefix the destination reserves for the campaign's purpose. `Some`
/// when it could not: every call it screens would be denied at the dial
/// (a campaign declaring only an Italian number, screening Spanish ones).
pub fn no_presentable_caller_id(campaign: &CampaignConfig, era: &Era) -> Option<Reason> {
    (!era.can_present_caller_id(campaign.purpose)).then(|| {
        Reason::new(
            ReasonCode::CallerIdNotAllowed,
            format!(
                "campaign {} declares no caller ID that the law of {} lets a call present ({} declared), and no prefix is reserved there for {} ({})",
                campaign.id,
                era.region,
                era.caller_ids.len(),
                campaign.purpose.as_str(),
                era.caller_id.origin.describe()
            ),
        )
    })
}

/// The prefixes reserved for `purpose`, for messages (`+34 400`).
fn reserved_for(prefixes: &[ReservedPrefix], purpose: crate::model::Purpose) -> String {
    prefixes
        .iter()
        .filter(|p| p.purposes.contains(&purpose))
        .map(|p| p.prefix)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reserved prefix a caller ID is in: `+CC prefix...`, `00CC prefix...`,
/// or national `prefix...` when the campaign's region is the destination.
/// National digits of the range's own length (`ReservedPrefix::digits`).
fn reserved_prefix(
    cli: &str,
    prefixes: &'static [ReservedPrefix],
    calling_code: u16,
    national_is_local: bool,
) -> Option<&'static ReservedPrefix> {
    if prefixes.is_empty()
        || !cli.chars().all(|c| {
            c.is_ascii_digit() || matches!(c, '+' | ' ' | '\u{a0}' | '-' | '.' | '(' | ')' | '/')
        })
    {
        return None;
    }
    let compact: String = cli
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    let plus = format!("+{calling_code}");
    let zeros = format!("00{calling_code}");
    let national = if let Some(rest) = compact.strip_prefix(&plus) {
        rest
    } else if let Some(rest) = compact.strip_prefix(&zeros) {
        rest
    } else if national_is_local && !compact.starts_with('+') && !compact.starts_with("00") {
        // National notation: Italy's trunk 0 is part of its prefixes
        // (`0844`); Spain has none (`400`).
        compact.as_str()
    } else {
        return None;
    };
    if national.contains('+') {
        return None;
    }
    // Each range has its own length: a 400 number of 6 or 12 digits is
    // no number of Spain's 9-digit range (found by review).
    prefixes.iter().find(|p| {
        national.starts_with(p.prefix) && (p.digits.0..=p.digits.1).contains(&national.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Purpose;
    use crate::number::Region;
    use crate::policy::Policies;

    fn campaign(purpose: Purpose, region: &str, caller_ids: &[&str]) -> CampaignConfig {
        CampaignConfig {
            id: "c".into(),
            controller: "acme".into(),
            purpose,
            default_region: Region::parse(region).unwrap(),
            destinations: vec![Region::parse(region).unwrap()],
            consent_required: false,
            profiled_segment: false,
            caller_ids: caller_ids.iter().map(|c| c.to_string()).collect(),
            calling_hours: None,
            attempt_limit: None,
            suppliers: Vec::new(),
        }
    }

    fn check(raw: &str, campaign: &CampaignConfig, at: &str) -> Option<Reason> {
        let policies = Policies::compile(&Config::with(vec![campaign.clone()], Vec::new()));
        let era = policies.era(&campaign.id, campaign.default_region, at.parse().unwrap());
        check_caller_id(raw, campaign, era)
    }

    fn code(raw: &str, purpose: Purpose) -> Option<ReasonCode> {
        check(
            raw,
            &campaign(purpose, "IT", &["+390212345678"]),
            "2026-11-23T10:00:00Z",
        )
        .map(|r| r.code)
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
            ("0844\u{a0}123456", Marketing, None),
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
    fn test_reserved_prefixes_belong_to_the_destination() {
        let french = campaign(Purpose::Marketing, "FR", &["+33162000000"]);
        let at = "2026-11-23T10:00:00Z";
        assert!(
            check("0844123456", &french, at).is_some(),
            "national 0844 is not French"
        );
        assert!(
            check("+39 0844 123456", &french, at).is_some(),
            "an Italian reserved prefix is no basis for calls to France"
        );
    }

    /// Orden TDF/149/2025 forbids mobile caller IDs for commercial
    /// calls to Spain from 7 June 2025, and 800/900 numbers may be used.
    #[test]
    fn test_spanish_mobile_caller_id_refused_from_7_june_2025() {
        let spanish = campaign(Purpose::Marketing, "ES", &["+34612345678", "+34900123456"]);
        let before = "2025-06-06T10:00:00Z";
        let after = "2025-06-07T10:00:00Z";
        assert_eq!(
            check("+34612345678", &spanish, before),
            None,
            "mobile allowed before"
        );
        let refused = check("+34612345678", &spanish, after).expect("mobile refused after");
        assert_eq!(refused.code, ReasonCode::CallerIdNotAllowed);
        assert!(
            refused.detail.contains("TDF/149/2025"),
            "{}",
            refused.detail
        );
        assert_eq!(
            check("+34900123456", &spanish, after),
            None,
            "900 numbers may be used"
        );
    }

    /// ES-SAC (Ley 10/2025): from 28 December 2026 a marketing call to
    /// Spain presents a number of the 400 range, and nothing else; other
    /// purposes keep the 2025 order's numbers and may not use the range.
    #[test]
    fn test_spanish_marketing_calls_present_the_commercial_range_from_28_december_2026() {
        let marketing = campaign(Purpose::Marketing, "ES", &["+34900123456", "+34912345678"]);
        let before = "2026-12-27T10:00:00Z";
        let after = "2026-12-28T10:00:00Z";
        assert_eq!(check("+34900123456", &marketing, before), None);
        for declared in ["+34900123456", "+34912345678"] {
            let refused = check(declared, &marketing, after).expect("not the range");
            assert_eq!(refused.code, ReasonCode::CallerIdNotAllowed);
            assert!(
                refused.detail.contains("400") && refused.detail.contains("Ley 10/2025"),
                "{}",
                refused.detail
            );
        }
        for in_range in ["+34 400 123 456", "400123456", "0034400123456"] {
            assert_eq!(check(in_range, &marketing, after), None, "{in_range}");
        }
        for wrong_length in [
            "+34 400 12",
            "+34 400 123",
            "+34 400 1234",
            "+34 400 123 456 789",
            "400123",
            "400123456789",
            "0034400123",
        ] {
            assert_eq!(
                check(wrong_length, &marketing, after).map(|r| r.code),
                Some(ReasonCode::CallerIdNotAllowed),
                "{wrong_length}: not nine digits (found by review)"
            );
        }
        let survey = campaign(Purpose::MarketResearch, "ES", &["+34900123456"]);
        assert_eq!(check("+34900123456", &survey, after), None);
        assert_eq!(
            check("+34400123456", &survey, after).map(|r| r.code),
            Some(ReasonCode::CallerIdNotAllowed),
            "the range is for commercial calls"
        );
        // Screening: a marketing campaign can present the range (undeclared).
        let policies = Policies::compile(&Config::with(vec![marketing.clone()], Vec::new()));
        let era = policies
            .era(
                &marketing.id,
                marketing.default_region,
                after.parse().unwrap(),
            )
            .unwrap();
        assert!(no_presentable_caller_id(&marketing, era).is_none());
    }

    /// Italy accepts only Italian geographic or mobile caller IDs: a foreign
    /// one is refused, naming its region.
    #[test]
    fn test_foreign_caller_id_refused_for_italy() {
        let italian = campaign(Purpose::Marketing, "IT", &["+442071234567"]);
        let refused = check("+442071234567", &italian, "2026-11-23T10:00:00Z").unwrap();
        assert_eq!(refused.code, ReasonCode::CallerIdNotAllowed);
        assert!(refused.detail.contains("GB"), "{}", refused.detail);
    }

    /// IT-CLI-4: only geographic and mobile numbers as voice CLI in Italy.
    #[test]
    fn test_italian_toll_free_caller_id_refused() {
        let italian = campaign(Purpose::Marketing, "IT", &["+39800123456"]);
        let refused = check("+39800123456", &italian, "2026-11-23T10:00:00Z").unwrap();
        assert_eq!(refused.code, ReasonCode::CallerIdNotAllowed);
    }
}
