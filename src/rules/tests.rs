//! Table-driven tests of [`evaluate`]: every reason code from plain values.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use roaring::RoaringTreemap;

use super::*;
use crate::calling::zones;
use crate::contacts::{Consent, Suppression};
use crate::model::Purpose;
use crate::model::RegistryKind;
use crate::number::{self, Region};
use crate::registry::snapshot::{Batch, SnapshotSource};

/// Monday: 16:00 in Rome and Berlin, 10:00 in New York: inside every statutory window.
const NOW: &str = "2026-11-23T15:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn region(code: &str) -> Region {
    Region::parse(code).unwrap()
}

fn campaign(id: &str, default_region: &str, consent_required: bool) -> CampaignConfig {
    CampaignConfig {
        id: id.into(),
        controller: "acme".into(),
        purpose: Purpose::Marketing,
        default_region: region(default_region),
        destinations: vec![region(default_region)],
        consent_required,
        profiled_segment: false,
        caller_ids: vec![match default_region {
            "IT" => "+390212345678".into(),
            "US" => "+12125550100".into(),
            _ => "+4930123456".into(),
        }],
        calling_hours: None,
        attempt_limit: None,
        suppliers: Vec::new(),
    }
}

fn registry_config(id: &str, kind: RegistryKind, country: &str, valid_days: u32) -> RegistryConfig {
    RegistryConfig {
        id: id.into(),
        kind,
        country: region(country),
        valid_days,
        seed_file: None,
        seed_controller: None,
        exemption_settings: Default::default(),
    }
}

fn snapshot(
    id: &str,
    kind: RegistryKind,
    controller: &str,
    checked_at: &str,
    numbers: &[&str],
) -> Arc<Snapshot> {
    let set: RoaringTreemap = numbers
        .iter()
        .map(|n| number::NumberKey::from_e164(n).unwrap().0)
        .collect();
    let mut batches = BTreeMap::new();
    batches.insert(
        controller.to_string(),
        vec![Batch {
            checked_at: checked_at.parse().unwrap(),
            numbers: set,
        }],
    );
    Arc::new(Snapshot {
        registry_id: id.into(),
        kind,
        country: "XX".into(),
        version: 4,
        created_at: Timestamp::UNIX_EPOCH,
        source: SnapshotSource {
            file: "t".into(),
            format: "lines".into(),
            mode: "replace".into(),
            import_seconds: 0.0,
        },
        // Block-lists state their coverage: the test's countries.
        coverage: (kind == RegistryKind::Blocklist)
            .then(|| vec!["1".into(), "39".into(), "44".into()]),
        batches,
        replaced: Default::default(),
        texts: Default::default(),
    })
}

fn consent(purpose: Purpose, granted: &str, revoked: Option<&str>) -> Consent {
    Consent {
        consent_id: "c1".into(),
        controller: "acme".into(),
        number: "+393331234567".into(),
        purpose,
        granted_at: granted.parse().unwrap(),
        revoked_at: revoked.map(|r| r.parse().unwrap()),
        expires_at: None,
        source: "web".into(),
        supplier: String::new(),
        method: "double_opt_in".into(),
        notice_version: "v1".into(),
        evidence_ref: "ev".into(),
        recorded_at: granted.parse().unwrap(),
    }
}

fn opt_out(controller: &str) -> Suppression {
    Suppression {
        suppression_id: "s1".into(),
        controller: controller.into(),
        campaign_id: String::new(),
        number: "+393331234567".into(),
        reason: "asked".into(),
        source: "call".into(),
        added_by: "test".into(),
        created_at: "2026-11-01T00:00:00Z".parse().unwrap(),
        expires_at: None,
    }
}

struct Case<'a> {
    name: &'a str,
    campaign: Option<CampaignConfig>,
    number: &'a str,
    caller_id: Option<&'a str>,
    registry: Option<(RegistryConfig, Option<Arc<Snapshot>>)>,
    contacts: ContactView,
    expect: Verdict,
    codes: &'a [ReasonCode],
}

fn run(case: &Case<'_>) -> Evaluation {
    run_at(case, now(), &[])
}

fn run_at(case: &Case<'_>, at: Timestamp, attempts: &[Timestamp]) -> Evaluation {
    let called = match &case.campaign {
        Some(c) => number::normalize(case.number, c.default_region),
        None => number::normalize_international(case.number),
    };
    let registries: Vec<RegistryData<'_>> = case
        .registry
        .iter()
        .map(|(config, snapshot)| RegistryData {
            config,
            snapshot: snapshot.as_deref(),
            valid_days: config.valid_days,
            opposed_at: None,
        })
        .collect();
    let whereabouts = match &called {
        Ok(n) => zones::locate(n.region.as_str(), &n.e164[1..]),
        Err(_) => Default::default(),
    };
    let policies = crate::policy::Policies::compile(&crate::config::Config::with(
        case.campaign.iter().cloned().collect(),
        case.registry
            .iter()
            .map(|(config, _)| config.clone())
            .collect(),
    ));
    let era = match (&case.campaign, &called) {
        (Some(c), Ok(n)) => policies.era(&c.id, n.region, at),
        _ => None,
    };
    let data = DecisionData {
        contacts: &case.contacts,
        registries: &registries,
        era,
        whereabouts: &whereabouts,
        attempts,
        window_memo: None,
    };
    let decide = |logged| {
        evaluate(
            &CallInput {
                campaign_id: "x",
                campaign: case.campaign.as_ref(),
                called: &called,
                caller_id: case.caller_id,
                logged,
            },
            &data,
            at,
        )
    };
    let logged = decide(true);
    // Unlogged (screening), the same answer without the data versions.
    let unlogged = decide(false);
    assert!(unlogged.data_versions.is_empty(), "{unlogged:?}");
    assert_eq!(
        Evaluation {
            data_versions: logged.data_versions.clone(),
            ..unlogged
        },
        logged
    );
    logged
}

fn rpo(checked_at: &str, numbers: &[&str]) -> Option<(RegistryConfig, Option<Arc<Snapshot>>)> {
    Some((
        registry_config("it-rpo", RegistryKind::Allowlist, "IT", 15),
        Some(snapshot(
            "it-rpo",
            RegistryKind::Allowlist,
            "acme",
            checked_at,
            numbers,
        )),
    ))
}

fn dnc(checked_at: &str, numbers: &[&str]) -> Option<(RegistryConfig, Option<Arc<Snapshot>>)> {
    Some((
        registry_config("us-dnc", RegistryKind::Blocklist, "US", 31),
        Some(snapshot(
            "us-dnc",
            RegistryKind::Blocklist,
            "",
            checked_at,
            numbers,
        )),
    ))
}

#[test]
fn test_every_reason_code_table() {
    use ReasonCode::*;
    use Verdict::*;
    let it = || Some(campaign("it", "IT", false));
    let us = || Some(campaign("us", "US", false));
    let de_opt_in = || Some(campaign("de", "DE", true));
    let mobile = "333 123 4567";
    let cli_it = Some("+390212345678");
    let cases = [
        Case {
            name: "rpo clear",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-20", &["+393331234567"]),
            contacts: ContactView::default(),
            expect: Allow,
            codes: &[RegistryClear],
        },
        Case {
            name: "rpo clearance on its last valid day",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-09", &["+393331234567"]),
            contacts: ContactView::default(),
            expect: Allow,
            codes: &[RegistryClear],
        },
        Case {
            name: "rpo clearance 15 days old is stale",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-08", &["+393331234567"]),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[RegistryStale],
        },
        Case {
            name: "never cleared",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-20", &["+393331234568"]),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[RegistryNotCovered],
        },
        Case {
            name: "registry without snapshot",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: Some((
                registry_config("it-rpo", RegistryKind::Allowlist, "IT", 15),
                None,
            )),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[RegistryUnavailable],
        },
        Case {
            name: "dnc listed",
            campaign: us(),
            number: "212 555 0199",
            caller_id: Some("+12125550100"),
            registry: dnc("2026-11-20", &["+12125550199"]),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[RegistryListed],
        },
        Case {
            name: "dnc clear",
            campaign: us(),
            number: "212 555 0198",
            caller_id: Some("+12125550100"),
            registry: dnc("2026-11-20", &["+12125550199"]),
            contacts: ContactView::default(),
            expect: Allow,
            codes: &[RegistryClear],
        },
        Case {
            name: "dnc stale and listed",
            campaign: us(),
            number: "212 555 0199",
            caller_id: Some("+12125550100"),
            registry: dnc("2026-10-01", &["+12125550199"]),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[RegistryStale, RegistryListed],
        },
        Case {
            name: "invalid number",
            campaign: it(),
            number: "12",
            caller_id: cli_it,
            registry: rpo("2026-11-20", &[]),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[InvalidNumber],
        },
        Case {
            name: "unknown campaign",
            campaign: None,
            number: "+393331234567",
            caller_id: cli_it,
            registry: None,
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[UnknownCampaign],
        },
        Case {
            name: "unknown campaign and invalid number",
            campaign: None,
            number: "333",
            caller_id: cli_it,
            registry: None,
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[UnknownCampaign, InvalidNumber],
        },
        Case {
            name: "destination not allowed",
            campaign: it(),
            number: "+12125550198",
            caller_id: cli_it,
            registry: None,
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[DestinationNotAllowed],
        },
        Case {
            name: "caller id missing",
            campaign: it(),
            number: mobile,
            caller_id: Some(""),
            registry: rpo("2026-11-20", &["+393331234567"]),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[CallerIdMissing],
        },
        Case {
            name: "caller id not declared",
            campaign: it(),
            number: mobile,
            caller_id: Some("+390299999999"),
            registry: rpo("2026-11-20", &["+393331234567"]),
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[CallerIdNotAllowed],
        },
        Case {
            name: "suppressed for controller",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-20", &["+393331234567"]),
            contacts: ContactView {
                relationships: vec![],
                consents: vec![],
                suppressions: vec![opt_out("acme")],
            },
            expect: Deny,
            codes: &[Suppressed],
        },
        Case {
            name: "suppressed globally",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-20", &["+393331234567"]),
            contacts: ContactView {
                relationships: vec![],
                consents: vec![],
                suppressions: vec![opt_out("")],
            },
            expect: Deny,
            codes: &[Suppressed],
        },
        Case {
            name: "other controller's opt-out does not apply",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-20", &["+393331234567"]),
            contacts: ContactView {
                relationships: vec![],
                consents: vec![],
                suppressions: vec![opt_out("beta")],
            },
            expect: Allow,
            codes: &[RegistryClear],
        },
        Case {
            name: "opt-in without consent",
            campaign: de_opt_in(),
            number: "+4915112345678",
            caller_id: Some("+4930123456"),
            registry: None,
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[NoConsent],
        },
        Case {
            name: "opt-in with consent",
            campaign: de_opt_in(),
            number: "+4915112345678",
            caller_id: Some("+4930123456"),
            registry: None,
            contacts: ContactView {
                relationships: vec![],
                consents: vec![consent(Purpose::Marketing, "2026-01-01T00:00:00Z", None)],
                suppressions: vec![],
            },
            expect: Allow,
            codes: &[Consent],
        },
        Case {
            name: "consent for another purpose",
            campaign: de_opt_in(),
            number: "+4915112345678",
            caller_id: Some("+4930123456"),
            registry: None,
            contacts: ContactView {
                relationships: vec![],
                consents: vec![consent(
                    Purpose::MarketResearch,
                    "2026-01-01T00:00:00Z",
                    None,
                )],
                suppressions: vec![],
            },
            expect: Deny,
            codes: &[NoConsent],
        },
        Case {
            name: "revoked consent",
            campaign: de_opt_in(),
            number: "+4915112345678",
            caller_id: Some("+4930123456"),
            registry: None,
            contacts: ContactView {
                relationships: vec![],
                consents: vec![consent(
                    Purpose::Marketing,
                    "2026-01-01T00:00:00Z",
                    Some("2026-11-23T09:59:59Z"),
                )],
                suppressions: vec![],
            },
            expect: Deny,
            codes: &[NoConsent],
        },
        Case {
            name: "opt-out beats consent",
            campaign: de_opt_in(),
            number: "+4915112345678",
            caller_id: Some("+4930123456"),
            registry: None,
            contacts: ContactView {
                relationships: vec![],
                consents: vec![consent(Purpose::Marketing, "2026-01-01T00:00:00Z", None)],
                suppressions: vec![opt_out("")],
            },
            expect: Deny,
            codes: &[Suppressed],
        },
        Case {
            name: "consent does not override the RPO",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: rpo("2026-11-20", &[]),
            contacts: ContactView {
                relationships: vec![],
                consents: vec![consent(Purpose::Marketing, "2026-01-01T00:00:00Z", None)],
                suppressions: vec![],
            },
            expect: Deny,
            codes: &[RegistryNotCovered],
        },
        Case {
            name: "every deny reason at once",
            campaign: it(),
            number: mobile,
            caller_id: Some("anonymous"),
            registry: rpo("2026-11-01", &["+393331234567"]),
            contacts: ContactView {
                relationships: vec![],
                consents: vec![],
                suppressions: vec![opt_out("")],
            },
            expect: Deny,
            codes: &[CallerIdMissing, Suppressed, RegistryStale],
        },
        // The statute requires the RPO: leaving it-rpo out of the config
        // must not read as "no registry applies". Fail closed.
        Case {
            name: "no registry for the country, opt-out campaign",
            campaign: it(),
            number: mobile,
            caller_id: cli_it,
            registry: None,
            contacts: ContactView::default(),
            expect: Deny,
            codes: &[RegistryUnavailable],
        },
    ];
    for case in &cases {
        let evaluation = run(case);
        let codes: Vec<ReasonCode> = evaluation.reasons.iter().map(|r| r.code).collect();
        assert_eq!(
            evaluation.verdict, case.expect,
            "{}: {:?}",
            case.name, evaluation.reasons
        );
        assert_eq!(codes, case.codes, "{}: {:?}", case.name, evaluation.reasons);
    }
}

#[test]
fn test_deny_reasons_are_deny_codes_and_allow_reasons_are_bases() {
    let evaluation = run(&Case {
        name: "x",
        campaign: Some(campaign("it", "IT", false)),
        number: "333 123 4567",
        caller_id: Some(""),
        registry: rpo("2026-11-20", &[]),
        contacts: ContactView::default(),
        expect: Verdict::Deny,
        codes: &[],
    });
    assert!(evaluation.reasons.iter().all(|r| r.code.is_deny()));
    assert_eq!(
        evaluation.data_versions.len(),
        2,
        "{:?}",
        evaluation.data_versions
    );
    assert!(evaluation.data_versions[0].starts_with("policy@"));
    assert_eq!(evaluation.data_versions[1], "it-rpo@4");
}

#[test]
fn test_screening_without_caller_id_skips_the_cli_rule() {
    let evaluation = run(&Case {
        name: "screen",
        campaign: Some(campaign("it", "IT", false)),
        number: "333 123 4567",
        caller_id: None,
        registry: rpo("2026-11-20", &["+393331234567"]),
        contacts: ContactView::default(),
        expect: Verdict::Allow,
        codes: &[],
    });
    assert_eq!(evaluation.verdict, Verdict::Allow);
}

/// Screening skipped the caller-ID rule altogether: a campaign whose only
/// declared caller ID the destination's law refuses (Spain: domestic
/// numbers only) screened its Spanish consents as ALLOW, where every dial
/// is denied (found by review). Italy keeps its reserved prefixes: a
/// campaign with no declared number may still present one in 0844.
#[test]
fn test_screening_denies_where_no_caller_id_could_be_presented() {
    use ReasonCode::*;
    let spain = CampaignConfig {
        destinations: vec![region("ES")],
        caller_ids: vec!["+390212345678".into()],
        ..campaign("es", "ES", true)
    };
    let consented = ContactView {
        consents: vec![consent(Purpose::Marketing, "2026-01-01T00:00:00Z", None)],
        ..ContactView::default()
    };
    let screened = run(&Case {
        name: "es screened",
        campaign: Some(spain.clone()),
        number: "612 345 678",
        caller_id: None,
        registry: None,
        contacts: consented.clone(),
        expect: Verdict::Deny,
        codes: &[],
    });
    assert_eq!(screened.verdict, Verdict::Deny, "{:?}", screened.reasons);
    assert_eq!(screened.reasons[0].code, CallerIdNotAllowed);
    assert!(
        screened.reasons[0].detail.contains("no caller ID"),
        "{:?}",
        screened.reasons
    );
    // With a Spanish number declared, the same consent screens as ALLOW.
    let declared = run(&Case {
        name: "es declared",
        campaign: Some(CampaignConfig {
            caller_ids: vec!["+34912345678".into()],
            ..spain
        }),
        number: "612 345 678",
        caller_id: None,
        registry: None,
        contacts: consented,
        expect: Verdict::Allow,
        codes: &[],
    });
    assert_eq!(declared.verdict, Verdict::Allow, "{:?}", declared.reasons);
    // Italy with nothing declared: a 0844 number may still be presented.
    let italy = run(&Case {
        name: "it reserved",
        campaign: Some(CampaignConfig {
            caller_ids: Vec::new(),
            ..campaign("it", "IT", false)
        }),
        number: "333 123 4567",
        caller_id: None,
        registry: rpo("2026-11-20", &["+393331234567"]),
        contacts: ContactView::default(),
        expect: Verdict::Allow,
        codes: &[],
    });
    assert_eq!(italy.verdict, Verdict::Allow, "{:?}", italy.reasons);
}

/// Every withdrawal and attempt the records hold counts, whatever the
/// decision's instant. Screening as of an earlier `at` read consents and
/// attempts as of `at`: a consent withdrawn since, or attempts made since,
/// left the number screened ALLOW where a dial now is denied, while
/// opt-outs recorded since already counted (found by review). And a
/// withdrawal or an ALLOW stamped ahead of this clock by another replica's
/// (up to the 500 ms the shared log allows) did not count in a CheckCall
/// until this clock reached it (found by review).
#[test]
fn test_withdrawals_and_attempts_count_whatever_the_decisions_instant() {
    use ReasonCode::*;
    let withdrawn_at = "2026-11-23T15:00:00Z";
    // Just before the withdrawal's stamp (a clock 400 ms behind), and a
    // minute before it (a screen as of then).
    let behind: Timestamp = "2026-11-23T14:59:59.600Z".parse().unwrap();
    let before: Timestamp = "2026-11-23T14:59:00Z".parse().unwrap();
    // Germany is opt-in: the consent is the only basis.
    let germany = Case {
        name: "de withdrawn",
        campaign: Some(campaign("de", "DE", true)),
        number: "30 1234567",
        caller_id: None,
        registry: None,
        contacts: ContactView {
            consents: vec![consent(
                Purpose::Marketing,
                "2026-01-01T00:00:00Z",
                Some(withdrawn_at),
            )],
            ..ContactView::default()
        },
        expect: Verdict::Deny,
        codes: &[],
    };
    for at in [behind, before] {
        let answer = run_at(&germany, at, &[]);
        assert_eq!(answer.verdict, Verdict::Deny, "{at}: {:?}", answer.reasons);
        assert_eq!(answer.reasons[0].code, NoConsent, "{:?}", answer.reasons);
    }

    // France (Bloctel era over, opt-in since 11 Aug 2026): 4 calls in 30
    // days, the last three stamped after `at`.
    let france = Case {
        name: "fr cap",
        campaign: Some(CampaignConfig {
            caller_ids: vec!["+33123456789".into()],
            ..campaign("fr", "FR", true)
        }),
        number: "1 23 45 67 89",
        caller_id: None,
        registry: None,
        contacts: ContactView {
            consents: vec![consent(Purpose::Marketing, "2026-01-01T00:00:00Z", None)],
            ..ContactView::default()
        },
        expect: Verdict::Deny,
        codes: &[],
    };
    let at: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
    let attempts: Vec<Timestamp> = [
        "2026-11-19T10:00:00Z",
        "2026-11-20T11:00:00Z",
        "2026-11-20T12:00:00Z",
        "2026-11-20T13:00:00Z",
    ]
    .iter()
    .map(|t| t.parse().unwrap())
    .collect();
    let capped = run_at(&france, at, &attempts);
    assert_eq!(capped.verdict, Verdict::Deny, "{:?}", capped.reasons);
    assert_eq!(capped.reasons[0].code, AttemptLimit, "{:?}", capped.reasons);
    // The cap lifts 30 days after the first of the four, Saturday 19
    // December: the window opens again on Monday at 10:00 in Paris.
    assert_eq!(
        capped.next_allowed_at,
        Some("2026-12-21T09:00:00Z".parse().unwrap())
    );
}

#[test]
fn test_time_rules_and_next_allowed_at() {
    use ReasonCode::*;
    let case = Case {
        name: "time",
        campaign: Some(campaign("it", "IT", false)),
        number: "333 123 4567",
        caller_id: Some("+390212345678"),
        registry: rpo("2026-11-20", &["+393331234567"]),
        contacts: ContactView::default(),
        expect: Verdict::Deny,
        codes: &[],
    };
    // Sunday evening in Rome: outside; waiting helps until Monday 09:00.
    let sunday: Timestamp = "2026-11-22T19:00:00Z".parse().unwrap();
    let evaluation = run_at(&case, sunday, &[]);
    assert_eq!(evaluation.verdict, Verdict::Deny);
    assert_eq!(
        evaluation
            .reasons
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        vec![OutsideCallingHours]
    );
    assert_eq!(
        evaluation.next_allowed_at,
        Some("2026-11-23T08:00:00Z".parse().unwrap())
    );

    // A stale registry as well: waiting does not help, no next_allowed_at.
    let stale = Case {
        registry: rpo("2026-11-01", &["+393331234567"]),
        ..case
    };
    let evaluation = run_at(&stale, sunday, &[]);
    assert_eq!(
        evaluation
            .reasons
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        vec![OutsideCallingHours, RegistryStale]
    );
    assert_eq!(evaluation.next_allowed_at, None);

    // France: 4 calls in 30 days; the cap lifts 30 days after the first
    // (Monday 7 December, 20:30 in Paris), and then the window must be open
    // too: Tuesday 8 December 10:00 in Paris.
    let fr = Case {
        name: "fr",
        campaign: Some(CampaignConfig {
            destinations: vec![region("FR")],
            default_region: region("FR"),
            ..campaign("fr", "DE", false)
        }),
        number: "06 12 34 56 78",
        caller_id: Some("+4930123456"),
        registry: None,
        // France is opt-in since 11 August 2026: a consent is the basis.
        contacts: ContactView {
            consents: vec![consent(Purpose::Marketing, "2026-01-01T00:00:00Z", None)],
            ..Default::default()
        },
        expect: Verdict::Deny,
        codes: &[],
    };
    let first: Timestamp = "2026-11-07T19:30:00Z".parse().unwrap();
    let attempts: Vec<Timestamp> = (0..4)
        .map(|d| first + jiff::SignedDuration::from_hours(24 * d))
        .collect();
    let evaluation = run_at(&fr, now(), &attempts);
    assert_eq!(
        evaluation
            .reasons
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        vec![AttemptLimit]
    );
    assert_eq!(
        evaluation.next_allowed_at,
        Some("2026-12-08T09:00:00Z".parse().unwrap())
    );
    let evaluation = run_at(&fr, now(), &attempts[..3]);
    assert_eq!(
        evaluation.verdict,
        Verdict::Allow,
        "{:?}",
        evaluation.reasons
    );
}

fn relationship(
    kind: crate::contacts::RelationshipKind,
    started: &str,
    ended: Option<&str>,
) -> crate::contacts::Relationship {
    crate::contacts::Relationship {
        relationship_id: "r1".into(),
        controller: "acme".into(),
        number: "+12125550199".into(),
        kind,
        started_at: started.parse().unwrap(),
        ended_at: ended.map(|e| e.parse().unwrap()),
        recorded_at: started.parse().unwrap(),
    }
}

#[test]
fn test_exemption_windows_at_their_edges() {
    use crate::contacts::RelationshipKind::*;
    use ReasonCode::*;
    // Evaluated at noon UTC (07:00 in New York is outside the window, so use 15:00 UTC days).
    let us_dnc_listed = || dnc("2026-11-20", &["+12125550199", "+393331234567"]);
    let cases: Vec<(
        &str,
        &str,
        crate::contacts::Relationship,
        &str,
        Verdict,
        ReasonCode,
    )> = vec![
        (
            "US customer, day before 18 months",
            "us",
            relationship(
                Customer,
                "2024-01-01T00:00:00Z",
                Some("2025-05-23T15:00:00Z"),
            ),
            "2026-11-22T15:00:00Z",
            Verdict::Allow,
            Relationship,
        ),
        (
            "US customer, day after 18 months",
            "us",
            relationship(
                Customer,
                "2024-01-01T00:00:00Z",
                Some("2025-05-23T15:00:00Z"),
            ),
            "2026-11-24T15:00:00Z",
            Verdict::Deny,
            RegistryListed,
        ),
        (
            "US customer ongoing",
            "us",
            relationship(Customer, "2020-01-01T00:00:00Z", None),
            "2026-11-23T15:00:00Z",
            Verdict::Allow,
            Relationship,
        ),
        (
            "US inquiry within 3 months",
            "us",
            relationship(Inquiry, "2026-08-24T15:00:00Z", None),
            "2026-11-23T15:00:00Z",
            Verdict::Allow,
            Relationship,
        ),
        (
            "US inquiry after 3 months",
            "us",
            relationship(Inquiry, "2026-08-22T15:00:00Z", None),
            "2026-11-23T15:00:00Z",
            Verdict::Deny,
            RegistryListed,
        ),
        (
            "IT contract ended 30 days ago",
            "it",
            relationship(
                Customer,
                "2020-01-01T00:00:00Z",
                Some("2026-10-24T15:00:00Z"),
            ),
            "2026-11-23T15:00:00Z",
            Verdict::Allow,
            Relationship,
        ),
        (
            "IT contract ended 31 days ago",
            "it",
            relationship(
                Customer,
                "2020-01-01T00:00:00Z",
                Some("2026-10-23T15:00:00Z"),
            ),
            "2026-11-23T15:00:00Z",
            Verdict::Deny,
            RegistryNotCovered,
        ),
        (
            "IT inquiry is no exemption",
            "it",
            relationship(Inquiry, "2026-11-20T15:00:00Z", None),
            "2026-11-23T15:00:00Z",
            Verdict::Deny,
            RegistryNotCovered,
        ),
    ];
    for (name, which, rel, at, verdict, code) in cases {
        let (campaign_config, number, cli, registry) = if which == "us" {
            (
                campaign("us", "US", false),
                "212 555 0199",
                "+12125550100",
                us_dnc_listed(),
            )
        } else {
            (
                campaign("it", "IT", false),
                "333 123 4567",
                "+390212345678",
                rpo("2026-11-20", &[]),
            )
        };
        let mut rel = rel;
        rel.number = if which == "us" {
            "+12125550199".into()
        } else {
            "+393331234567".into()
        };
        let case = Case {
            name,
            campaign: Some(campaign_config),
            number,
            caller_id: Some(cli),
            registry,
            contacts: ContactView {
                relationships: vec![rel],
                ..Default::default()
            },
            expect: verdict,
            codes: &[],
        };
        let evaluation = run_at(&case, at.parse().unwrap(), &[]);
        assert_eq!(
            evaluation.verdict, verdict,
            "{name}: {:?}",
            evaluation.reasons
        );
        assert_eq!(
            evaluation.reasons[0].code, code,
            "{name}: {:?}",
            evaluation.reasons
        );
    }
}

#[test]
fn test_relationship_is_per_controller_and_opt_out_beats_it() {
    use ReasonCode::*;
    let mut rel = relationship(
        crate::contacts::RelationshipKind::Customer,
        "2020-01-01T00:00:00Z",
        None,
    );
    rel.number = "+393331234567".into();
    let other_controller = crate::contacts::Relationship {
        controller: "beta".into(),
        ..rel.clone()
    };
    let case = |contacts: ContactView| Case {
        name: "x",
        campaign: Some(campaign("it", "IT", false)),
        number: "333 123 4567",
        caller_id: Some("+390212345678"),
        registry: rpo("2026-11-20", &[]),
        contacts,
        expect: Verdict::Deny,
        codes: &[],
    };
    let evaluation = run(&case(ContactView {
        relationships: vec![other_controller],
        ..Default::default()
    }));
    assert_eq!(
        evaluation
            .reasons
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        vec![RegistryNotCovered]
    );
    let evaluation = run(&case(ContactView {
        relationships: vec![rel.clone()],
        suppressions: vec![opt_out("acme")],
        ..Default::default()
    }));
    assert_eq!(
        evaluation
            .reasons
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        vec![Suppressed]
    );
    let evaluation = run(&case(ContactView {
        relationships: vec![rel],
        ..Default::default()
    }));
    assert_eq!(evaluation.verdict, Verdict::Allow);
    assert_eq!(
        evaluation
            .reasons
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        vec![Relationship]
    );
}

#[test]
fn test_consent_exemptions_by_country_and_italian_policy() {
    use ReasonCode::*;
    let consent_us = |method: &str| crate::contacts::Consent {
        number: "+12125550199".into(),
        method: method.into(),
        ..consent(Purpose::Marketing, "2026-01-01T00:00:00Z", None)
    };
    let us = |method: &str| Case {
        name: "us",
        campaign: Some(campaign("us", "US", false)),
        number: "212 555 0199",
        caller_id: Some("+12125550100"),
        registry: dnc("2026-11-20", &["+12125550199"]),
        contacts: ContactView {
            consents: vec![consent_us(method)],
            ..Default::default()
        },
        expect: Verdict::Allow,
        codes: &[],
    };
    // US: only the consumer's signed written agreement with this seller
    // lifts the DNC (47 CFR 64.1200(c)(2)(ii)); any consent did (found by
    // review).
    for method in ["double_opt_in", "web form", "", "written"] {
        let evaluation = run(&us(method));
        assert_eq!(
            evaluation.verdict,
            Verdict::Deny,
            "{method}: {:?}",
            evaluation.reasons
        );
        let codes: Vec<_> = evaluation.reasons.iter().map(|r| r.code).collect();
        assert_eq!(codes, vec![RegistryListed, NoConsent], "{method}");
        assert!(
            evaluation.reasons[1]
                .detail
                .contains("signed written agreement")
        );
    }
    for method in ["written_agreement", " Written_Agreement "] {
        let evaluation = run(&us(method));
        assert_eq!(
            evaluation.verdict,
            Verdict::Allow,
            "{method}: {:?}",
            evaluation.reasons
        );
        assert!(
            evaluation
                .reasons
                .iter()
                .any(|r| r.code == Consent && r.detail.contains("signed written agreement"))
        );
    }

    // Italy: not by default; with the policy, only if given after the number was seen not cleared.
    let consent_it = consent(Purpose::Marketing, "2026-11-10T00:00:00Z", None);
    let mut registry = registry_config("it-rpo", RegistryKind::Allowlist, "IT", 15);
    let snapshot = snapshot("it-rpo", RegistryKind::Allowlist, "acme", "2026-11-20", &[]);
    let campaign_it = campaign("it", "IT", false);
    let called = number::normalize("333 123 4567", region("IT"));
    let whereabouts = zones::locate("IT", "393331234567");
    let contacts = ContactView {
        consents: vec![consent_it],
        ..Default::default()
    };
    let decide = |registry: &RegistryConfig, seen: &[(String, Timestamp)]| {
        let opposed_at = seen.first().map(|(_, at)| *at);
        let policies = crate::policy::Policies::compile(&crate::config::Config::with(
            vec![campaign_it.clone()],
            vec![registry.clone()],
        ));
        let era = policies.era(&campaign_it.id, region("IT"), now());
        let registries = vec![RegistryData {
            config: registry,
            snapshot: Some(&snapshot),
            valid_days: registry.valid_days,
            opposed_at,
        }];
        evaluate(
            &CallInput {
                campaign_id: "it",
                campaign: Some(&campaign_it),
                called: &called,
                caller_id: Some("+390212345678"),
                logged: true,
            },
            &DecisionData {
                contacts: &contacts,
                registries: &registries,
                era,
                whereabouts: &whereabouts,
                attempts: &[],
                window_memo: None,
            },
            now(),
        )
    };
    let seen_before = [(
        "it-rpo".to_string(),
        "2026-11-01T00:00:00Z".parse().unwrap(),
    )];
    let seen_after = [(
        "it-rpo".to_string(),
        "2026-11-15T00:00:00Z".parse().unwrap(),
    )];
    assert_eq!(
        decide(&registry, &seen_before).verdict,
        Verdict::Deny,
        "policy off by default"
    );
    registry.exemption_settings.consent_after_registration = true;
    let allowed = decide(&registry, &seen_before);
    assert_eq!(allowed.verdict, Verdict::Allow);
    assert!(
        allowed
            .reasons
            .iter()
            .any(|r| r.code == Consent && r.detail.contains("answered the number as opposed")),
        "{:?}",
        allowed.reasons
    );
    assert_eq!(
        decide(&registry, &seen_after).verdict,
        Verdict::Deny,
        "consent older than the observation"
    );
    // The answer is dated by its day; a consent of that same day may
    // predate the registration, so it does not count.
    let seen_same_day = [(
        "it-rpo".to_string(),
        "2026-11-10T00:00:00Z".parse().unwrap(),
    )];
    assert_eq!(
        decide(&registry, &seen_same_day).verdict,
        Verdict::Deny,
        "a consent of the answer's own day is not after it"
    );
    let denied = decide(&registry, &[]);
    assert_eq!(denied.verdict, Verdict::Deny, "no evidence, no exemption");
    // Asked of every path: a consent given after the registration lifts
    // the registry only as a signed written agreement once the registry
    // asks for one (found by review: any consent did there).
    registry.exemption_settings.consent_in_writing = true;
    assert_eq!(
        decide(&registry, &seen_before).verdict,
        Verdict::Deny,
        "not a written agreement"
    );
}

/// Screening `at` an instant before the registry data was checked: the data
/// says nothing about that instant, so it cannot clear the number.
#[test]
fn test_registry_data_checked_after_the_instant_decided_says_nothing() {
    use ReasonCode::*;
    let year_before: Timestamp = "2025-11-24T15:00:00Z".parse().unwrap();
    let day_after_check: Timestamp = "2026-11-21T15:00:00Z".parse().unwrap();
    let it = Case {
        name: "rpo",
        campaign: Some(campaign("it", "IT", false)),
        number: "333 123 4567",
        caller_id: Some("+390212345678"),
        registry: rpo("2026-11-20", &["+393331234567"]),
        contacts: ContactView::default(),
        expect: Verdict::Deny,
        codes: &[],
    };
    let before = run_at(&it, year_before, &[]);
    assert_eq!(before.verdict, Verdict::Deny);
    assert_eq!(
        before.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![RegistryNotCovered],
        "{:?}",
        before.reasons
    );
    assert_eq!(run_at(&it, day_after_check, &[]).verdict, Verdict::Allow);
    let us = Case {
        name: "dnc",
        campaign: Some(campaign("us", "US", false)),
        number: "212 555 0123",
        caller_id: Some("+12125550100"),
        registry: dnc("2026-11-20", &["+12125550199"]),
        contacts: ContactView::default(),
        expect: Verdict::Deny,
        codes: &[],
    };
    let before = run_at(&us, year_before, &[]);
    assert!(
        before.reasons.iter().any(|r| r.code == RegistryNotCovered),
        "{:?}",
        before.reasons
    );
    assert_eq!(run_at(&us, day_after_check, &[]).verdict, Verdict::Allow);
}

/// The RPO's later answer "opposed" cancels an older clearance kept by
/// `--mode add`: the latest answer for the controller counts.
#[test]
fn test_a_later_opposed_answer_outweighs_an_older_clearance() {
    use ReasonCode::*;
    let at: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
    let campaign_it = campaign("it", "IT", false);
    let registry = registry_config("it-rpo", RegistryKind::Allowlist, "IT", 15);
    let snapshot = snapshot(
        "it-rpo",
        RegistryKind::Allowlist,
        "acme",
        "2026-11-16",
        &["+393331234567"],
    );
    let called = number::normalize("333 123 4567", region("IT"));
    let whereabouts = zones::locate("IT", "393331234567");
    let policies = crate::policy::Policies::compile(&crate::config::Config::with(
        vec![campaign_it.clone()],
        vec![registry.clone()],
    ));
    let era = policies.era("it", region("IT"), at);
    let decide = |opposed_at: Option<&str>| {
        let registries = vec![RegistryData {
            config: &registry,
            snapshot: Some(&snapshot),
            valid_days: 15,
            opposed_at: opposed_at.map(|t| t.parse().unwrap()),
        }];
        evaluate(
            &CallInput {
                campaign_id: "it",
                campaign: Some(&campaign_it),
                called: &called,
                caller_id: Some("+390212345678"),
                logged: true,
            },
            &DecisionData {
                contacts: &ContactView::default(),
                registries: &registries,
                era,
                whereabouts: &whereabouts,
                attempts: &[],
                window_memo: None,
            },
            at,
        )
    };
    assert_eq!(decide(None).verdict, Verdict::Allow);
    assert_eq!(
        decide(Some("2026-11-10T00:00:00Z")).verdict,
        Verdict::Allow,
        "opposed before the clearance"
    );
    let denied = decide(Some("2026-11-23T00:00:00Z"));
    assert_eq!(
        denied.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![RegistryListed]
    );
}

/// A consent withdrawn and then recorded again (a CRM's nightly re-sync of
/// the old consent) must not come back to life.
#[test]
fn test_a_withdrawal_ends_consents_given_before_it_even_if_recorded_again() {
    let withdrawn = consent(
        Purpose::Marketing,
        "2026-10-01T00:00:00Z",
        Some("2026-11-01T00:00:00Z"),
    );
    let mut resynced = consent(Purpose::Marketing, "2026-10-01T00:00:00Z", None);
    resynced.consent_id = "c2".into();
    let view = ContactView {
        consents: vec![withdrawn.clone(), resynced],
        ..Default::default()
    };
    assert!(valid_consent(&view, &marketing_for("acme"), now()).is_none());
    let mut renewed = consent(Purpose::Marketing, "2026-11-10T00:00:00Z", None);
    renewed.consent_id = "c3".into();
    let view = ContactView {
        consents: vec![withdrawn, renewed],
        ..Default::default()
    };
    assert_eq!(
        valid_consent(&view, &marketing_for("acme"), now()).map(|c| c.consent_id.as_str()),
        Some("c3"),
        "a consent given after the withdrawal counts"
    );
}

/// Issue 19: a campaign that calls a profiled segment needs a valid
/// profiling consent of its controller besides its own basis; without
/// one it is denied, whatever else allows the call.
#[test]
fn test_a_profiled_segment_needs_a_profiling_consent() {
    let mut profiled = campaign("it", "IT", false);
    profiled.profiled_segment = true;
    let case = |campaign: CampaignConfig, contacts: ContactView| Case {
        name: "profiled",
        campaign: Some(campaign),
        number: "333 123 4567",
        caller_id: Some("+390212345678"),
        registry: rpo("2026-11-20", &["+393331234567"]),
        contacts,
        expect: Verdict::Deny,
        codes: &[],
    };
    let marketing_only = ContactView {
        consents: vec![consent(Purpose::Marketing, "2026-10-01T00:00:00Z", None)],
        ..Default::default()
    };
    let denied = run(&case(profiled.clone(), marketing_only.clone()));
    assert_eq!(denied.verdict, Verdict::Deny);
    assert!(
        denied
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::NoConsent && r.detail.contains("profiled segment")),
        "{:?}",
        denied.reasons
    );
    let allowed = run(&case(campaign("it", "IT", false), marketing_only.clone()));
    assert_eq!(allowed.verdict, Verdict::Allow, "{:?}", allowed.reasons);
    let mut with_profiling = marketing_only.clone();
    let mut profiling = consent(Purpose::Profiling, "2026-10-02T00:00:00Z", None);
    profiling.consent_id = "p1".into();
    with_profiling.consents.push(profiling);
    let allowed = run(&case(profiled.clone(), with_profiling));
    assert_eq!(allowed.verdict, Verdict::Allow, "{:?}", allowed.reasons);
    let mut withdrawn = marketing_only;
    let mut profiling = consent(
        Purpose::Profiling,
        "2026-10-02T00:00:00Z",
        Some("2026-11-01T00:00:00Z"),
    );
    profiling.consent_id = "p1".into();
    withdrawn.consents.push(profiling);
    assert_eq!(run(&case(profiled, withdrawn)).verdict, Verdict::Deny);
}

fn marketing_for(controller: &str) -> Asking<'_> {
    Asking {
        controller,
        purpose: Purpose::Marketing,
        consent_max_age: None,
        suppliers: &[],
    }
}

/// Issue 19, provenance: a consent a supplier collected counts only when
/// the controller declared that supplier and the consent was given within
/// the contract; otherwise it grants nothing, and the denial says why.
#[test]
fn test_a_consent_from_an_undeclared_supplier_grants_nothing() {
    let contract = |controller: &str, from: Option<&str>, until: Option<&str>| {
        crate::config::SupplierContract {
            controller: controller.into(),
            name: "leadco".into(),
            contract_ref: "contract 2026-14".into(),
            from: from.map(|d| d.parse().unwrap()),
            until: until.map(|d| d.parse().unwrap()),
        }
    };
    let bought = {
        let mut c = consent(Purpose::Marketing, "2026-10-01T00:00:00Z", None);
        c.supplier = "leadco".into();
        // The US DNC: a signed written agreement, so that only the
        // supplier decides.
        c.method = crate::contacts::WRITTEN_AGREEMENT.into();
        ContactView {
            consents: vec![c],
            ..Default::default()
        }
    };
    let decide = |suppliers: Vec<crate::config::SupplierContract>, consent_required: bool| {
        let mut campaign = campaign("us", "US", consent_required);
        campaign.suppliers = suppliers;
        run(&Case {
            name: "supplier",
            campaign: Some(campaign),
            number: "212 555 0199",
            caller_id: Some("+12125550100"),
            // On the do-not-call list: only the consent can lift its DENY.
            registry: dnc("2026-11-20", &["+12125550199"]),
            contacts: bought.clone(),
            expect: Verdict::Deny,
            codes: &[],
        })
    };
    let says = |evaluation: &Evaluation, text: &str| {
        evaluation
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::NoConsent && r.detail.contains(text))
    };

    let undeclared = decide(Vec::new(), false);
    assert_eq!(
        undeclared.verdict,
        Verdict::Deny,
        "{:?}",
        undeclared.reasons
    );
    assert!(
        says(
            &undeclared,
            "\"leadco\", which is not a declared supplier of controller acme"
        ),
        "{:?}",
        undeclared.reasons
    );
    let required = decide(Vec::new(), true);
    assert!(
        says(&required, "requires consent") && says(&required, "not a declared supplier"),
        "{:?}",
        required.reasons
    );
    let other_controller = decide(vec![contract("globex", None, None)], false);
    assert_eq!(other_controller.verdict, Verdict::Deny);
    let outside = decide(
        vec![contract("acme", Some("2026-10-02"), Some("2027-10-01"))],
        false,
    );
    assert_eq!(outside.verdict, Verdict::Deny);
    assert!(
        says(
            &outside,
            "outside its contract with controller acme (contract 2026-14: 2026-10-02 to 2027-10-01)"
        ),
        "{:?}",
        outside.reasons
    );
    let declared = decide(
        vec![contract("acme", Some("2026-10-01"), Some("2026-10-01"))],
        false,
    );
    assert_eq!(declared.verdict, Verdict::Allow, "{:?}", declared.reasons);
    // The controller's own consent needs no declaration.
    let mut own = bought.consents[0].clone();
    own.supplier = String::new();
    let view = ContactView {
        consents: vec![own],
        ..Default::default()
    };
    assert!(valid_consent(&view, &marketing_for("acme"), now()).is_some());
}
