//! The compiled policy: dated switches, stricter-only campaigns, overrides
//! reported, blocked destinations; each decided through the real rules.

use jiff::Timestamp;

use super::*;
use crate::calling::zones;
use crate::contacts::{Consent, ContactView, Relationship, RelationshipKind};
use crate::model::{Purpose, ReasonCode, Verdict};
use crate::number;
use crate::rules::{CallInput, DecisionData, RegistryData, evaluate};

fn region(code: &str) -> Region {
    Region::parse(code).unwrap()
}

fn campaign(id: &str, destination: &str, caller_id: &str) -> CampaignConfig {
    CampaignConfig {
        id: id.into(),
        controller: "acme".into(),
        purpose: Purpose::Marketing,
        default_region: region(destination),
        destinations: vec![region(destination)],
        consent_required: false,
        profiled_segment: false,
        caller_ids: vec![caller_id.into()],
        calling_hours: None,
        attempt_limit: None,
        suppliers: Vec::new(),
    }
}

fn config(text: &str) -> Config {
    Config::parse(text, "test.toml", std::path::Path::new("/tmp")).unwrap()
}

fn consent(number: &str) -> Consent {
    Consent {
        consent_id: "c1".into(),
        controller: "acme".into(),
        number: number.into(),
        purpose: Purpose::Marketing,
        granted_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        revoked_at: None,
        expires_at: None,
        source: "web".into(),
        supplier: String::new(),
        method: "double_opt_in".into(),
        notice_version: "v1".into(),
        evidence_ref: "ev".into(),
        recorded_at: "2026-01-01T00:00:00Z".parse().unwrap(),
    }
}

/// Decides a call of `campaign` under `config`'s compiled policy, with no
/// registry data loaded and `attempts` earlier ALLOWs.
fn decide(
    config: &Config,
    campaign_id: &str,
    number: &str,
    caller_id: &str,
    contacts: &ContactView,
    attempts: &[Timestamp],
    at: &str,
) -> crate::rules::Evaluation {
    let at: Timestamp = at.parse().unwrap();
    let policies = Policies::compile(config);
    let campaign = config.campaign(campaign_id).unwrap();
    let called = number::normalize(number, campaign.default_region);
    let n = called.as_ref().unwrap();
    let whereabouts = zones::locate(n.region.as_str(), &n.e164[1..]);
    let registries: Vec<RegistryData<'_>> = config
        .registries
        .iter()
        .filter(|r| r.country == n.region)
        .map(|config| RegistryData {
            config,
            snapshot: None,
            valid_days: config.valid_days,
            opposed_at: None,
        })
        .collect();
    evaluate(
        &CallInput {
            campaign_id,
            campaign: Some(campaign),
            called: &called,
            caller_id: Some(caller_id),
            logged: true,
        },
        &DecisionData {
            contacts,
            registries: &registries,
            era: policies.era(campaign_id, n.region, at),
            whereabouts: &whereabouts,
            attempts,
            window_memo: None,
        },
        at,
    )
}

fn codes(evaluation: &crate::rules::Evaluation) -> Vec<ReasonCode> {
    evaluation.reasons.iter().map(|r| r.code).collect()
}

const FR_CAMPAIGN: &str = r#"
[[registry]]
id = "fr-bloctel"
kind = "allowlist"
country = "FR"

[[campaign]]
id = "fr"
controller = "acme"
purpose = "marketing"
default_region = "FR"
destinations = ["FR"]
caller_ids = ["+33162000000"]
"#;

/// France is opt-in from 11 August 2026 (loi n° 2025-594 art. 13
/// III). The same cold call, without consent, on 10 and on 11 August 2026
/// (Monday and Tuesday, 11:00 in Paris).
#[test]
fn test_the_french_switch_to_opt_in() {
    let config = config(FR_CAMPAIGN);
    let nobody = ContactView::default();
    let before = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &nobody,
        &[],
        "2026-08-10T09:00:00Z",
    );
    assert_eq!(
        codes(&before),
        vec![ReasonCode::RegistryUnavailable],
        "before: Bloctel decides (no snapshot loaded here), consent is not asked: {:?}",
        before.reasons
    );
    let after = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &nobody,
        &[],
        "2026-08-11T09:00:00Z",
    );
    assert_eq!(after.verdict, Verdict::Deny);
    assert!(
        codes(&after).contains(&ReasonCode::NoConsent),
        "{:?}",
        after.reasons
    );
    assert!(
        after.reasons.iter().any(|r| r.detail.contains("2025-594")),
        "the detail names the law: {:?}",
        after.reasons
    );
    // With a consent, the call rests on it; Bloctel, still configured, is
    // no longer consulted (the law ended it).
    let with_consent = ContactView {
        consents: vec![consent("+33612345678")],
        ..Default::default()
    };
    let consented = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &with_consent,
        &[],
        "2026-08-11T09:00:00Z",
    );
    assert_eq!(consented.verdict, Verdict::Allow, "{:?}", consented.reasons);
    assert_eq!(codes(&consented), vec![ReasonCode::Consent]);
    // An ongoing contract stands in for consent; an ended one does not.
    let customer = |ended: Option<&str>| ContactView {
        relationships: vec![Relationship {
            relationship_id: "r1".into(),
            controller: "acme".into(),
            number: "+33612345678".into(),
            kind: RelationshipKind::Customer,
            started_at: "2025-01-01T00:00:00Z".parse().unwrap(),
            ended_at: ended.map(|e| e.parse().unwrap()),
            recorded_at: "2025-01-01T00:00:00Z".parse().unwrap(),
        }],
        ..Default::default()
    };
    let ongoing = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &customer(None),
        &[],
        "2026-08-11T09:00:00Z",
    );
    assert!(
        codes(&ongoing).contains(&ReasonCode::Relationship),
        "{:?}",
        ongoing.reasons
    );
    let ended = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &customer(Some("2026-08-01T00:00:00Z")),
        &[],
        "2026-08-11T09:00:00Z",
    );
    assert!(
        codes(&ended).contains(&ReasonCode::NoConsent),
        "{:?}",
        ended.reasons
    );
}

/// A campaign's cap is added to France's 4 calls in 30 days, never in its
/// place: 3 a day alone would allow up to 90 a month.
#[test]
fn test_campaign_cap_narrows_the_statutory_cap() {
    let config = config(&format!(
        "{FR_CAMPAIGN}[campaign.attempt_limit]\nmax_attempts = 3\nwindow_hours = 24\n"
    ));
    let with_consent = ContactView {
        consents: vec![consent("+33612345678")],
        ..Default::default()
    };
    let at = "2026-11-23T10:00:00Z";
    let t: Timestamp = at.parse().unwrap();
    // Four calls on four earlier days: the daily cap allows a fifth, the law does not.
    let attempts: Vec<Timestamp> = (1..=4)
        .map(|d| t - jiff::SignedDuration::from_hours(24 * d + 1))
        .collect();
    let evaluation = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &with_consent,
        &attempts,
        at,
    );
    assert_eq!(
        codes(&evaluation),
        vec![ReasonCode::AttemptLimit],
        "{:?}",
        evaluation.reasons
    );
    let era = Policies::compile(&config)
        .era("fr", region("FR"), t)
        .unwrap()
        .clone();
    assert_eq!(era.caps.len(), 2);
    assert!(matches!(era.caps[0].origin, Origin::Statute { .. }));
    assert!(matches!(era.caps[1].origin, Origin::Campaign { .. }));
}

/// Campaign settings only tighten: `consent_required = false` does not make
/// Germany opt-out, campaign hours cannot open what the statute closes.
#[test]
fn test_campaign_settings_cannot_loosen() {
    let config = config(
        r#"
[[campaign]]
id = "de"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
consent_required = false
caller_ids = ["+4930123456"]

[[campaign]]
id = "it"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
[campaign.calling_hours]
sun = ["00:00-24:00"]
"#,
    );
    let nobody = ContactView::default();
    let de = decide(
        &config,
        "de",
        "030 1234567",
        "+4930123456",
        &nobody,
        &[],
        "2026-11-23T10:00:00Z",
    );
    assert_eq!(codes(&de), vec![ReasonCode::NoConsent], "{:?}", de.reasons);
    // Sunday 29 November 2026, noon in Rome.
    let it = decide(
        &config,
        "it",
        "333 123 4567",
        "+390212345678",
        &nobody,
        &[],
        "2026-11-29T11:00:00Z",
    );
    assert!(
        codes(&it).contains(&ReasonCode::OutsideCallingHours),
        "{:?}",
        it.reasons
    );
}

/// Without a configured RPO no Italian number may be ALLOW REGISTRY_CLEAR:
/// the destination is blocked and reported.
#[test]
fn test_missing_required_registry_blocks_and_is_reported() {
    let config = config(
        r#"
[[campaign]]
id = "it"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
"#,
    );
    let policies = Policies::compile(&config);
    let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
    let blocked = policies.blocked_at(now);
    assert_eq!(blocked.len(), 1);
    assert_eq!(
        (
            blocked[0].campaign.as_str(),
            blocked[0].destination.as_str()
        ),
        ("it", "IT")
    );
    let evaluation = decide(
        &config,
        "it",
        "333 123 4567",
        "+390212345678",
        &ContactView::default(),
        &[],
        "2026-11-23T10:00:00Z",
    );
    assert_eq!(codes(&evaluation), vec![ReasonCode::RegistryUnavailable]);
    assert!(evaluation.reasons[0].detail.contains("RPO"));
}

/// An override replaces the statute from its date, and is reported.
#[test]
fn test_override_replaces_the_statute_from_its_date() {
    let config = config(
        r#"
[destination.DE]
from = "2027-01-01"
consent = "opt_out"
registry = "blocklist"
registry_valid_days = 20
source = "hypothetical Robinson law"

[[registry]]
id = "de-robinson"
kind = "blocklist"
country = "DE"
valid_days = 20

[[campaign]]
id = "de"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
caller_ids = ["+4930123456"]
"#,
    );
    let policies = Policies::compile(&config);
    assert_eq!(policies.overrides.len(), 1);
    assert_eq!(policies.overrides[0].destination, "DE");
    let before = policies
        .era("de", region("DE"), "2026-12-31T12:00:00Z".parse().unwrap())
        .unwrap();
    assert!(before.opt_in());
    assert!(matches!(before.consent.origin, Origin::Statute { .. }));
    let after = policies
        .era("de", region("DE"), "2027-01-01T12:00:00Z".parse().unwrap())
        .unwrap();
    assert!(!after.opt_in());
    assert_eq!(after.registry.value.map(|r| r.valid_days), Some(20));
    assert!(matches!(after.consent.origin, Origin::Override { .. }));
}

/// An override window for a destination whose statute sets no hours (or
/// that has no statute) is the whole window: the days it leaves unset are
/// closed (found by review: a Monday-to-Friday window left the weekend
/// open all day).
#[test]
fn test_an_override_window_without_statutory_hours_closes_the_days_it_leaves_unset() {
    let config = config(
        r#"
[destination.PT]
source = "a new Portuguese telemarketing law"
[destination.PT.calling_hours]
mon = ["09:00-21:00"]
tue = ["09:00-21:00"]
wed = ["09:00-21:00"]
thu = ["09:00-21:00"]
fri = ["09:00-21:00"]

[destination.DE.calling_hours]
sat = ["10:00-18:00"]

# A state's window narrows the national one: its unset days stay open.
[destination.US.state.AL.calling_hours]
sun = []

[[registry]]
id = "us-dnc"
kind = "blocklist"
country = "US"

[[campaign]]
id = "us"
controller = "acme"
purpose = "marketing"
default_region = "US"
destinations = ["US"]
caller_ids = ["+12125550100"]

[[campaign]]
id = "pt"
controller = "acme"
purpose = "marketing"
default_region = "PT"
destinations = ["PT"]
caller_ids = ["+351211234567"]

[[campaign]]
id = "de"
controller = "acme"
purpose = "marketing"
default_region = "DE"
destinations = ["DE"]
caller_ids = ["+4930123456"]
"#,
    );
    let pt = ContactView {
        consents: vec![consent("+351912345678")],
        ..ContactView::default()
    };
    let call = |at: &str| {
        decide(
            &config,
            "pt",
            "+351912345678",
            "+351211234567",
            &pt,
            &[],
            at,
        )
    };
    // Sunday 29 November 2026, 03:00 and 12:00 in Lisbon (UTC+0).
    for at in ["2026-11-29T03:00:00Z", "2026-11-29T12:00:00Z"] {
        let sunday = call(at);
        assert_eq!(sunday.verdict, Verdict::Deny, "{at}: {:?}", sunday.reasons);
        assert!(codes(&sunday).contains(&ReasonCode::OutsideCallingHours));
    }
    // Monday at 10:00: inside the days it sets.
    assert_eq!(call("2026-11-30T10:00:00Z").verdict, Verdict::Allow);

    // Germany's statute sets no hours: a Saturday window alone leaves
    // Monday closed too.
    let de = ContactView {
        consents: vec![consent("+4915123456789")],
        ..ContactView::default()
    };
    let de_call = |at: &str| decide(&config, "de", "+4915123456789", "+4930123456", &de, &[], at);
    assert!(codes(&de_call("2026-11-30T10:00:00Z")).contains(&ReasonCode::OutsideCallingHours));
    assert_eq!(de_call("2026-11-28T10:00:00Z").verdict, Verdict::Allow);
    let policies = Policies::compile(&config);
    let era = policies
        .era("de", region("DE"), "2026-11-28T10:00:00Z".parse().unwrap())
        .unwrap();
    let week = era.window.hours.as_ref().expect("the override's window");
    assert_eq!(week.days[0], Some(Vec::new()), "Monday closed");
    let us = policies
        .era("us", region("US"), "2026-11-30T15:00:00Z".parse().unwrap())
        .unwrap();
    let alabama = &us.window.states["AL"];
    assert_eq!(alabama.days[6], Some(Vec::new()), "Sunday closed");
    assert_eq!(alabama.days[0], None, "Monday left to the national window");
}

/// Holiday hours for a destination without a holiday calendar of its own
/// hold only for the years `extra_holidays` lists: in a year without a
/// listed date its holidays are unknown, and the window is closed (found
/// by review: dates listed for 2026 let King's Day 2027 be called as a
/// Tuesday).
#[test]
fn test_holiday_hours_close_a_year_whose_holidays_are_not_listed() {
    let config = config(
        r#"
[destination.NL]
extra_holidays = ["2026-04-27", "2026-12-25"]

[[campaign]]
id = "nl"
controller = "acme"
purpose = "marketing"
default_region = "NL"
destinations = ["NL"]
caller_ids = ["+31201234567"]
[campaign.calling_hours]
mon = ["09:00-20:00"]
tue = ["09:00-20:00"]
wed = ["09:00-20:00"]
thu = ["09:00-20:00"]
fri = ["09:00-20:00"]
holidays = []
"#,
    );
    let contacts = ContactView {
        consents: vec![consent("+31612345678")],
        ..ContactView::default()
    };
    let call = |at: &str| {
        decide(
            &config,
            "nl",
            "+31612345678",
            "+31201234567",
            &contacts,
            &[],
            at,
        )
    };
    // 10:00 in Amsterdam (UTC+2 in April).
    assert_eq!(call("2026-04-28T08:00:00Z").verdict, Verdict::Allow);
    assert!(codes(&call("2026-04-27T08:00:00Z")).contains(&ReasonCode::OutsideCallingHours));
    for at in ["2027-04-27T08:00:00Z", "2027-04-28T08:00:00Z"] {
        let unknown = call(at);
        assert_eq!(unknown.verdict, Verdict::Deny, "{at}");
        let detail = &unknown
            .reasons
            .iter()
            .find(|r| r.code == ReasonCode::OutsideCallingHours)
            .expect("outside the window")
            .detail;
        assert!(
            detail.contains("2027") && detail.contains("extra_holidays"),
            "{detail}"
        );
    }
}

/// An override's `extra_holidays` close their days before its `from` too
/// (found by review: `[destination.ES]` from 2027 with Holy Thursday 2026
/// listed let Madrid be called that day; one override per destination, so
/// a law change ahead and this year's regional holidays must share it).
#[test]
fn test_listed_holidays_hold_before_the_overrides_from() {
    let config = config(
        r#"
[destination.ES]
from = "2027-01-01"
source = "regional holidays; a change of law ahead"
extra_holidays = ["2026-06-24"]

[[campaign]]
id = "es"
controller = "acme"
purpose = "marketing"
default_region = "ES"
destinations = ["ES"]
consent_required = true
caller_ids = ["+34912345678"]
"#,
    );
    let contacts = ContactView {
        consents: vec![consent("+34612345678")],
        ..ContactView::default()
    };
    let call = |at: &str| {
        decide(
            &config,
            "es",
            "+34612345678",
            "+34912345678",
            &contacts,
            &[],
            at,
        )
    };
    // 10:00 in Madrid (UTC+2 in June): the Tuesday before is open; the
    // listed Wednesday (San Juan, a regional holiday) is not.
    let tuesday = call("2026-06-23T08:00:00Z");
    assert_eq!(tuesday.verdict, Verdict::Allow, "{:?}", tuesday.reasons);
    assert!(codes(&call("2026-06-24T08:00:00Z")).contains(&ReasonCode::OutsideCallingHours));
}

#[test]
fn test_opt_out_override_without_a_registry_is_refused() {
    let error = Config::parse(
        "[destination.DE]\nconsent = \"opt_out\"\n",
        "test.toml",
        std::path::Path::new("/tmp"),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("destination.DE.registry"), "{error}");
    // France's registry (Bloctel) ends on 10 August 2026: an opt-out
    // override from before then had none to consult after it (found by
    // review: the calls were allowed on any other French block-list).
    for from in ["", "from = \"2026-01-01\"\nsource = \"s\"\n"] {
        let error = Config::parse(
            &format!("[destination.FR]\n{from}consent = \"opt_out\"\n"),
            "test.toml",
            std::path::Path::new("/tmp"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("destination.FR.registry"), "{error}");
    }
    let error = Config::parse(
        "[destination.IT]\nregistry = \"none\"\n",
        "test.toml",
        std::path::Path::new("/tmp"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("opt-out destination needs a registry"),
        "{error}"
    );
}

/// 4 October is an Italian holiday again from 2026 (L. 151/2025);
/// Monday 4 October 2027 is closed and Saturday 3 October 2026 is a pre-holiday.
#[test]
fn test_italian_4_october() {
    let config = config(
        r#"
[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"

[[campaign]]
id = "it"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
"#,
    );
    let nobody = ContactView::default();
    let call = |at| {
        decide(
            &config,
            "it",
            "333 123 4567",
            "+390212345678",
            &nobody,
            &[],
            at,
        )
    };
    // Monday 4 October 2027, 11:00 in Rome.
    assert!(codes(&call("2027-10-04T09:00:00Z")).contains(&ReasonCode::OutsideCallingHours));
    // Friday 3 October 2025 was a plain Friday: 19:30 in Rome was open.
    assert!(!codes(&call("2025-10-03T17:30:00Z")).contains(&ReasonCode::OutsideCallingHours));
    // Friday 3 October 2031 is a pre-holiday: closes at 19:00.
    assert!(codes(&call("2031-10-03T17:30:00Z")).contains(&ReasonCode::OutsideCallingHours));
}

/// Florida allows at most 3 calls in 24 hours (Fla. Stat.
/// 501.616(6)); a number placed in Florida gets the cap, New York's does not.
#[test]
fn test_florida_cap() {
    let config = config(
        r#"
[[registry]]
id = "us-dnc"
kind = "blocklist"
country = "US"

[[campaign]]
id = "us"
controller = "acme"
purpose = "marketing"
default_region = "US"
destinations = ["US"]
caller_ids = ["+12125550100"]
"#,
    );
    let at = "2026-11-23T17:00:00Z";
    let t: Timestamp = at.parse().unwrap();
    let attempts: Vec<Timestamp> = (1..=3)
        .map(|h| t - jiff::SignedDuration::from_hours(h))
        .collect();
    let nobody = ContactView::default();
    let miami = decide(
        &config,
        "us",
        "305 555 0123",
        "+12125550100",
        &nobody,
        &attempts,
        at,
    );
    assert!(
        codes(&miami).contains(&ReasonCode::AttemptLimit),
        "{:?}",
        miami.reasons
    );
    let new_york = decide(
        &config,
        "us",
        "212 555 0123",
        "+12125550100",
        &nobody,
        &attempts,
        at,
    );
    assert!(
        !codes(&new_york).contains(&ReasonCode::AttemptLimit),
        "{:?}",
        new_york.reasons
    );
}

/// Ley 10/2025: a Spanish consent must be renewed every 2 years; from the
/// law's entry into force (28 Dec 2025) an older one no longer counts. The
/// end of its adaptation period (28 Dec 2026) was the start before: a
/// consent of June 2024 was allowed in November 2026 (found by review).
#[test]
fn test_spanish_consent_renewal() {
    let config = config(
        r#"
[[campaign]]
id = "es"
controller = "acme"
purpose = "marketing"
default_region = "ES"
destinations = ["ES"]
caller_ids = ["+34900123456"]
"#,
    );
    let mut old = consent("+34612345678");
    old.granted_at = "2024-06-01T00:00:00Z".parse().unwrap();
    let contacts = ContactView {
        consents: vec![old],
        ..Default::default()
    };
    // Tuesday 23 Dec 2025 and Wednesday 25 Nov 2026, 11:00 in Madrid.
    let before = decide(
        &config,
        "es",
        "612 34 56 78",
        "+34900123456",
        &contacts,
        &[],
        "2025-12-23T10:00:00Z",
    );
    assert_eq!(before.verdict, Verdict::Allow, "{:?}", before.reasons);
    let after = decide(
        &config,
        "es",
        "612 34 56 78",
        "+34900123456",
        &contacts,
        &[],
        "2026-11-25T10:00:00Z",
    );
    assert_eq!(
        codes(&after),
        vec![ReasonCode::NoConsent],
        "{:?}",
        after.reasons
    );
}

/// Spain (ES-CLI-2025): from 7 Jun 2025 only geographic and 800/900
/// numbers of Spain's plan may be presented; premium-rate, shared-cost,
/// personal, UAN, mobile and foreign numbers were accepted but mobile
/// (found by review).
#[test]
fn test_spanish_caller_ids_are_geographic_or_freephone() {
    let consented = ContactView {
        consents: vec![consent("+34612345678")],
        ..Default::default()
    };
    // Wednesday 25 Nov 2026, 11:00 in Madrid.
    let at = "2026-11-25T10:00:00Z";
    for (caller_id, allowed) in [
        ("+34912345678", true),
        ("+34900123456", true),
        ("+34800123456", true),
        ("+34612000000", false),
        ("+34806123456", false),
        ("+34902123456", false),
        ("+34701234567", false),
        ("+34511234567", false),
        ("+33162000000", false),
    ] {
        let config = config(&format!(
            "[[campaign]]\nid = \"es\"\ncontroller = \"acme\"\npurpose = \"marketing\"\ndefault_region = \"ES\"\ndestinations = [\"ES\"]\ncaller_ids = [\"{caller_id}\"]\n"
        ));
        let decided = decide(
            &config,
            "es",
            "612 34 56 78",
            caller_id,
            &consented,
            &[],
            at,
        );
        assert_eq!(
            decided.verdict == Verdict::Allow,
            allowed,
            "{caller_id}: {:?}",
            decided.reasons
        );
        if !allowed {
            assert!(
                decided
                    .reasons
                    .iter()
                    .any(|r| r.code == ReasonCode::CallerIdNotAllowed),
                "{caller_id}: {:?}",
                decided.reasons
            );
        }
    }
}

/// Spain: a customer relationship stands in for consent only for a number
/// checked against Lista Robinson (ES-CONSENT, ES-ROBINSON); without a
/// block-list of ES such a call was allowed unchecked (found by review).
/// A consent needs no list.
#[test]
fn test_a_spanish_relationship_needs_lista_robinson() {
    const ES: &str = r#"
[[campaign]]
id = "es"
controller = "acme"
purpose = "marketing"
default_region = "ES"
destinations = ["ES"]
caller_ids = ["+34900123456"]
"#;
    let customer = ContactView {
        relationships: vec![Relationship {
            relationship_id: "r1".into(),
            controller: "acme".into(),
            number: "+34612345678".into(),
            kind: RelationshipKind::Customer,
            started_at: "2025-01-01T00:00:00Z".parse().unwrap(),
            ended_at: None,
            recorded_at: "2025-01-01T00:00:00Z".parse().unwrap(),
        }],
        ..Default::default()
    };
    // Wednesday 25 Nov 2026, 11:00 in Madrid.
    let at = "2026-11-25T10:00:00Z";
    let without = decide(
        &config(ES),
        "es",
        "612 34 56 78",
        "+34900123456",
        &customer,
        &[],
        at,
    );
    assert_eq!(without.verdict, Verdict::Deny);
    assert!(
        without
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::RegistryUnavailable
                && r.detail.contains("Lista Robinson")),
        "{:?}",
        without.reasons
    );
    let consented = ContactView {
        consents: vec![consent("+34612345678")],
        ..Default::default()
    };
    let with_consent = decide(
        &config(ES),
        "es",
        "612 34 56 78",
        "+34900123456",
        &consented,
        &[],
        at,
    );
    assert_eq!(
        with_consent.verdict,
        Verdict::Allow,
        "{:?}",
        with_consent.reasons
    );
    // With the list configured, the list decides (here: no data loaded).
    let robinson = format!(
        "{ES}\n[[registry]]\nid = \"es-robinson\"\nkind = \"blocklist\"\ncountry = \"ES\"\nvalid_days = 30\n"
    );
    let listed = decide(
        &config(&robinson),
        "es",
        "612 34 56 78",
        "+34900123456",
        &customer,
        &[],
        at,
    );
    assert!(
        !listed
            .reasons
            .iter()
            .any(|r| r.detail.contains("Lista Robinson")),
        "{:?}",
        listed.reasons
    );
    assert!(
        listed
            .reasons
            .iter()
            .any(|r| r.detail.contains("es-robinson")),
        "{:?}",
        listed.reasons
    );
}

/// An override of Spain's consent regime sets the regime only: the
/// statute's renewal age stays. It was dropped, and a consent of 2024 was
/// answered ALLOW in 2027 (found by review).
#[test]
fn test_a_consent_override_keeps_the_statutes_renewal_age() {
    let config = config(
        r#"
[destination.ES]
consent = "opt_in"
source = "counsel's reading"

[[campaign]]
id = "es"
controller = "acme"
purpose = "marketing"
default_region = "ES"
destinations = ["ES"]
caller_ids = ["+34900123456"]
"#,
    );
    let policies = Policies::compile(&config);
    let era = policies
        .era("es", region("ES"), "2027-06-01T10:00:00Z".parse().unwrap())
        .unwrap();
    assert!(matches!(era.consent.origin, Origin::Override { .. }));
    assert_eq!(
        era.consent.value.consent_max_age,
        Some(crate::statutes::Period::Months(24))
    );
    let mut old = consent("+34612345678");
    old.granted_at = "2024-01-01T00:00:00Z".parse().unwrap();
    let contacts = ContactView {
        consents: vec![old],
        ..Default::default()
    };
    // Tuesday 1 Jun 2027, 12:00 in Madrid, from the commercial range.
    let evaluation = decide(
        &config,
        "es",
        "612 34 56 78",
        "+34 400 123 456",
        &contacts,
        &[],
        "2027-06-01T10:00:00Z",
    );
    assert_eq!(
        codes(&evaluation),
        vec![ReasonCode::NoConsent],
        "{:?}",
        evaluation.reasons
    );
}

/// A call with no lawful basis is denied NO_CONSENT also when another
/// reason, one that waiting lifts, denies it: a repeated ALLOW is replayed
/// when only its own attempt denies it now, and `next_allowed_at` named a
/// time at which the call would still be refused (found by review). The
/// configuration refuses an opt-out destination without a registry, the
/// one way to no basis without a deny of its own: built here in code.
#[test]
fn test_no_basis_is_named_beside_denies_that_waiting_lifts() {
    let mut config = config(
        r#"
[[campaign]]
id = "nl"
controller = "acme"
purpose = "marketing"
default_region = "NL"
destinations = ["NL"]
caller_ids = ["+31201234567"]
[campaign.attempt_limit]
max_attempts = 1
window_hours = 24
"#,
    );
    config
        .destination_overrides
        .push(crate::config::DestinationOverride {
            region: region("NL"),
            from: None,
            source: String::new(),
            consent: Some(ConsentRegime::OptOut),
            registry: Some(None),
            registry_valid_days: None,
            calling_hours: None,
            extra_holidays: Vec::new(),
            attempt_limit: None,
            states: Default::default(),
        });
    let earlier: Timestamp = "2026-11-24T09:00:00Z".parse().unwrap();
    let evaluation = decide(
        &config,
        "nl",
        "020 123 4567",
        "+31201234567",
        &ContactView::default(),
        &[earlier],
        "2026-11-24T10:00:00Z",
    );
    assert_eq!(
        codes(&evaluation),
        vec![ReasonCode::AttemptLimit, ReasonCode::NoConsent],
        "{:?}",
        evaluation.reasons
    );
    assert_eq!(evaluation.next_allowed_at, None);
}

#[test]
fn test_policy_version_changes_with_the_configuration() {
    let a = Policies::compile(&config(FR_CAMPAIGN));
    let b = Policies::compile(&config(FR_CAMPAIGN));
    assert_eq!(a.version, b.version, "deterministic");
    let c = Policies::compile(&config(&format!(
        "{FR_CAMPAIGN}[campaign.attempt_limit]\nmax_attempts = 3\nwindow_hours = 24\n"
    )));
    assert_ne!(a.version, c.version);
}

#[test]
fn test_no_statute_is_opt_in() {
    let config = Config::with(vec![campaign("jp", "JP", "+81312345678")], Vec::new());
    let era = Policies::compile(&config)
        .era("jp", region("JP"), Timestamp::now())
        .unwrap()
        .clone();
    assert!(era.opt_in());
    assert!(era.blocked.is_none());
    assert!(matches!(era.consent.origin, Origin::Default { .. }));
}

/// Every demo campaign passes `policy show` and none is blocked.
#[test]
fn test_demo_campaigns_show_and_are_not_blocked() {
    let config = Config::parse(
        crate::config::BUILT_IN,
        "built-in",
        std::path::Path::new("."),
    )
    .unwrap();
    let policies = Policies::compile(&config);
    let now = Timestamp::now();
    assert!(
        policies.blocked_from(now).is_empty(),
        "{:?}",
        policies.blocked
    );
    for campaign in &config.campaigns {
        let report = report(&policies, &config, &campaign.id, None, now).unwrap();
        let text = report.to_string();
        assert!(
            text.contains("consent") && text.contains("<- statute"),
            "{text}"
        );
    }
}

/// An override's `registry_valid_days` applies only from its `from` date:
/// the registry's validity is the era's, not fixed at load.
#[test]
fn test_override_validity_only_from_its_date() {
    let config = config(
        r#"
[destination.IT]
from = "2030-01-01"
registry_valid_days = 60

[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"

[[campaign]]
id = "it"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
"#,
    );
    assert_eq!(
        config.registries[0].valid_days, 15,
        "the statute's, not the future override's"
    );
    let policies = Policies::compile(&config);
    let now = policies
        .era("it", region("IT"), "2026-11-25T10:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(now.registry("it-rpo").unwrap().valid_days, 15);
    let later = policies
        .era("it", region("IT"), "2030-06-01T10:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(
        later.registry("it-rpo").unwrap().valid_days,
        15,
        "capped by the configured value"
    );
    let longer = Config::parse(
        "[destination.IT]\nfrom = \"2030-01-01\"\nregistry_valid_days = 60\n[[registry]]\nid = \"it-rpo\"\nkind = \"allowlist\"\ncountry = \"IT\"\nvalid_days = 60\n[[campaign]]\nid = \"it\"\ncontroller = \"acme\"\npurpose = \"marketing\"\ndefault_region = \"IT\"\ndestinations = [\"IT\"]\n",
        "t",
        std::path::Path::new("/tmp"),
    )
    .unwrap();
    let policies = Policies::compile(&longer);
    let now = policies
        .era("it", region("IT"), "2026-11-25T10:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(
        now.registry("it-rpo").unwrap().valid_days,
        15,
        "the statute's 15 days until 2030"
    );
    let later = policies
        .era("it", region("IT"), "2030-06-01T10:00:00Z".parse().unwrap())
        .unwrap();
    assert_eq!(later.registry("it-rpo").unwrap().valid_days, 60);
}

/// `policy show` prints what a configured registry enforces: its validity
/// in force, its exemptions, and a loosening policy switch, visibly.
#[test]
fn test_policy_show_names_registry_settings_in_force() {
    let config = config(
        r#"
[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"
valid_days = 10
[registry.exemptions]
consent_after_registration = true

[[campaign]]
id = "it"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]
"#,
    );
    let policies = Policies::compile(&config);
    let text = report(
        &policies,
        &config,
        "it",
        None,
        "2026-11-25T10:00:00Z".parse().unwrap(),
    )
    .unwrap()
    .to_string();
    assert!(text.contains("a result relied on 10 days"), "{text}");
    assert!(text.contains("POLICY consent_after_registration"), "{text}");
    assert!(
        text.contains("customers (ongoing or ended at most 30 days earlier)"),
        "{text}"
    );
}

/// GDPR-WITHDRAW: after a withdrawal of consent, and no consent since, no
/// other basis makes the call lawful: France's ongoing contract stood in
/// for the withdrawn consent (found by review). A consent given after the
/// withdrawal counts again.
#[test]
fn test_a_withdrawal_is_not_replaced_by_another_basis() {
    let config = config(FR_CAMPAIGN);
    let relationship = Relationship {
        relationship_id: "r1".into(),
        controller: "acme".into(),
        number: "+33612345678".into(),
        kind: RelationshipKind::Customer,
        started_at: "2025-01-01T00:00:00Z".parse().unwrap(),
        ended_at: None,
        recorded_at: "2025-01-01T00:00:00Z".parse().unwrap(),
    };
    let mut withdrawn = consent("+33612345678");
    withdrawn.revoked_at = Some("2026-09-01T00:00:00Z".parse().unwrap());
    let contacts = ContactView {
        consents: vec![withdrawn.clone()],
        relationships: vec![relationship.clone()],
        ..Default::default()
    };
    let at = "2026-11-23T10:00:00Z";
    let denied = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &contacts,
        &[],
        at,
    );
    assert_eq!(denied.verdict, Verdict::Deny, "{:?}", denied.reasons);
    assert!(
        denied
            .reasons
            .iter()
            .any(|r| r.code == ReasonCode::NoConsent && r.detail.contains("withdrawn")),
        "{:?}",
        denied.reasons
    );
    // Neither lifts the withdrawal (both found by review): a consent from
    // an undeclared supplier (it grants nothing), nor one given since that
    // has lapsed by now (the relationship stood in again once it ended).
    let mut brokered = consent("+33612345678");
    brokered.consent_id = "c-leadco".into();
    brokered.supplier = "leadco".into();
    brokered.granted_at = "2026-10-01T00:00:00Z".parse().unwrap();
    let mut lapsed = consent("+33612345678");
    lapsed.consent_id = "c-lapsed".into();
    lapsed.granted_at = "2026-10-01T00:00:00Z".parse().unwrap();
    lapsed.expires_at = Some("2026-11-01T00:00:00Z".parse().unwrap());
    for since in [brokered, lapsed] {
        let id = since.consent_id.clone();
        let view = ContactView {
            consents: vec![withdrawn.clone(), since],
            relationships: vec![relationship.clone()],
            ..Default::default()
        };
        let still = decide(
            &config,
            "fr",
            "06 12 34 56 78",
            "+33162000000",
            &view,
            &[],
            at,
        );
        assert_eq!(still.verdict, Verdict::Deny, "{id}: {:?}", still.reasons);
    }
    let mut again = consent("+33612345678");
    again.consent_id = "c2".into();
    again.granted_at = "2026-10-01T00:00:00Z".parse().unwrap();
    let regranted = ContactView {
        consents: vec![withdrawn, again],
        relationships: vec![relationship],
        ..Default::default()
    };
    let allowed = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &regranted,
        &[],
        at,
    );
    assert_eq!(allowed.verdict, Verdict::Allow, "{:?}", allowed.reasons);
}

/// The contract's RecordRelationship records a contract's end as a second
/// record with the same start: the first, ongoing, went on exempting for
/// ever (found by review). The end ends both.
#[test]
fn test_a_relationship_recorded_again_with_its_end_ends() {
    let config = config(FR_CAMPAIGN);
    let record = |id: &str, ended: Option<&str>| Relationship {
        relationship_id: id.into(),
        controller: "acme".into(),
        number: "+33612345678".into(),
        kind: RelationshipKind::Customer,
        started_at: "2025-01-01T00:00:00Z".parse().unwrap(),
        ended_at: ended.map(|e| e.parse().unwrap()),
        recorded_at: "2025-01-01T00:00:00Z".parse().unwrap(),
    };
    let contacts = ContactView {
        relationships: vec![
            record("r1", None),
            record("r2", Some("2026-09-01T00:00:00Z")),
        ],
        ..Default::default()
    };
    let decided = decide(
        &config,
        "fr",
        "06 12 34 56 78",
        "+33162000000",
        &contacts,
        &[],
        "2026-11-23T10:00:00Z",
    );
    assert_eq!(decided.verdict, Verdict::Deny, "{:?}", decided.reasons);
    assert!(
        codes(&decided).contains(&ReasonCode::NoConsent),
        "{:?}",
        decided.reasons
    );
}

/// A campaign that can present no caller ID at a destination is reported:
/// every dial there is denied, and screening now denies its numbers too.
/// Italy's reserved 0844 keeps a campaign without a usable number callable.
#[test]
fn test_a_destination_without_a_presentable_caller_id_is_reported() {
    let warned = |campaign: CampaignConfig| {
        Policies::compile(&Config::with(vec![campaign], Vec::new()))
            .warnings
            .into_iter()
            .filter(|w| w.contains("CALLER_ID_NOT_ALLOWED"))
            .count()
    };
    // Spain refuses a foreign number; nothing else is declared.
    assert_eq!(warned(campaign("es", "ES", "+390212345678")), 1);
    assert_eq!(warned(campaign("es", "ES", "+34912345678")), 0);
    // Italy: 0844 is reserved for marketing.
    let mut italy = campaign("it", "IT", "+390212345678");
    italy.caller_ids.clear();
    assert_eq!(warned(italy), 0);
    // No statute (Austria): nothing declared, nothing presentable.
    let mut austria = campaign("at", "AT", "+4312345678");
    austria.caller_ids.clear();
    assert_eq!(warned(austria), 1);
}

/// The French overseas departments have a region code of their own and had
/// no statute: opt-in but no window and no cap, so a Réunion number with a
/// consent was allowed at 07:00 on a Sunday (found by review). France's
/// law governs them, in their own time zone, with their own abolition day.
#[test]
fn test_french_overseas_departments_follow_the_french_statute() {
    let config = config(
        r#"
[[campaign]]
id = "re"
controller = "acme"
purpose = "marketing"
default_region = "RE"
destinations = ["RE"]
consent_required = true
caller_ids = ["+262262123456"]
"#,
    );
    let number = "+262692123456";
    let contacts = ContactView {
        consents: vec![consent(number)],
        ..ContactView::default()
    };
    let call = |at: &str, attempts: &[Timestamp]| {
        decide(
            &config,
            "re",
            number,
            "+262262123456",
            &contacts,
            attempts,
            at,
        )
    };
    // Réunion is UTC+4. Sunday 22 November 2026, 07:00 there.
    assert!(codes(&call("2026-11-22T03:00:00Z", &[])).contains(&ReasonCode::OutsideCallingHours));
    // Monday 23 November, 11:00 there: open (France: 10-13, 14-20).
    let monday = call("2026-11-23T07:00:00Z", &[]);
    assert_eq!(monday.verdict, Verdict::Allow, "{:?}", monday.reasons);
    // 09:30 there, before France's 10:00 (but 06:30 in Paris: the zone is
    // Réunion's).
    assert!(codes(&call("2026-11-23T05:30:00Z", &[])).contains(&ReasonCode::OutsideCallingHours));
    // Abolition of slavery, Monday 20 December 2027: a holiday there only.
    assert!(codes(&call("2027-12-20T07:00:00Z", &[])).contains(&ReasonCode::OutsideCallingHours));
    // France's cap: 4 calls in 30 days.
    let four: Vec<Timestamp> = (1..=4)
        .map(|d| format!("2026-11-{:02}T07:00:00Z", 10 + d).parse().unwrap())
        .collect();
    assert!(codes(&call("2026-11-23T07:00:00Z", &four)).contains(&ReasonCode::AttemptLimit));
    // Mayotte (UTC+3) likewise, with its own day, 27 April.
    assert!(crate::statutes::holidays::is_holiday(
        "YT",
        jiff::civil::date(2027, 4, 27),
        &[]
    ));
    assert!(!crate::statutes::holidays::is_holiday(
        "FR",
        jiff::civil::date(2027, 4, 27),
        &[]
    ));
}

/// The US territories had no statute: opt-in but no window, so a Puerto
/// Rico number with a consent was allowed at 03:00 there. The federal
/// window (TSR, TCPA) applies there now, at the territory's clock; they
/// stay opt-in.
#[test]
fn test_us_territories_keep_the_federal_window_and_need_consent() {
    let config = config(
        r#"
[[campaign]]
id = "pr"
controller = "acme"
purpose = "marketing"
default_region = "PR"
destinations = ["PR", "GU"]
caller_ids = ["+17872345678"]
"#,
    );
    let with_consent = |number: &str| ContactView {
        consents: vec![consent(number)],
        ..ContactView::default()
    };
    let call = |number: &str, contacts: &ContactView, at: &str| {
        decide(&config, "pr", number, "+17872345678", contacts, &[], at)
    };
    let number = "+17872345679";
    // Puerto Rico is UTC-4: 03:00 there, then 10:00 and 21:30.
    let night = call(number, &with_consent(number), "2026-11-23T07:00:00Z");
    assert!(
        codes(&night).contains(&ReasonCode::OutsideCallingHours),
        "{:?}",
        night.reasons
    );
    let day = call(number, &with_consent(number), "2026-11-23T14:00:00Z");
    assert_eq!(day.verdict, Verdict::Allow, "{:?}", day.reasons);
    assert!(
        codes(&call(number, &with_consent(number), "2026-11-24T01:30:00Z"))
            .contains(&ReasonCode::OutsideCallingHours)
    );
    // Without a consent: still denied (no registry stands in).
    assert_eq!(
        call(number, &ContactView::default(), "2026-11-23T14:00:00Z").verdict,
        Verdict::Deny
    );
    // Guam (UTC+10): 14:00 UTC is 00:00 there.
    let guam = "+16712345678";
    assert!(
        codes(&call(guam, &with_consent(guam), "2026-11-23T14:00:00Z"))
            .contains(&ReasonCode::OutsideCallingHours)
    );
}

/// An override of a destination that had no statute before (its days
/// left out were closed) must list every day: they would now take the
/// statute's hours (found by review: Monday to Friday for Puerto Rico
/// opened the weekend at 08-21 after the upgrade).
#[test]
fn test_an_override_of_a_newly_governed_destination_lists_every_day() {
    let weekdays = "mon = [\"09:00-20:00\"]\ntue = [\"09:00-20:00\"]\nwed = [\"09:00-20:00\"]\nthu = [\"09:00-20:00\"]\nfri = [\"09:00-20:00\"]\n";
    for region in ["PR", "MF"] {
        let error = Config::parse(
            &format!("[destination.{region}.calling_hours]\n{weekdays}"),
            "test.toml",
            std::path::Path::new("/tmp"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(&format!("destination.{region}.calling_hours.sat")),
            "{error}"
        );
    }
    let config = config(&format!(
        r#"
[[campaign]]
id = "pr"
controller = "acme"
purpose = "marketing"
default_region = "PR"
destinations = ["PR"]
caller_ids = ["+17872345678"]

[destination.PR.calling_hours]
{weekdays}sat = []
sun = []
"#
    ));
    let number = "+17872345679";
    let contacts = ContactView {
        consents: vec![consent(number)],
        ..ContactView::default()
    };
    // Saturday 21 November 2026, 10:00 in Puerto Rico: closed as listed.
    let saturday = decide(
        &config,
        "pr",
        number,
        "+17872345678",
        &contacts,
        &[],
        "2026-11-21T14:00:00Z",
    );
    assert!(
        codes(&saturday).contains(&ReasonCode::OutsideCallingHours),
        "{:?}",
        saturday.reasons
    );
}

/// Saint-Barthélemy, Saint-Martin and Saint-Pierre-et-Miquelon had no
/// statute: a consent allowed a call at 07:00 on a Sunday and a fifth
/// call in 30 days (found by review). They take France's window, holidays
/// and cap at their own clock, and stay opt-in.
#[test]
fn test_french_collectivities_keep_the_french_window_and_cap() {
    for (region, caller, number, sunday_0700) in [
        (
            "MF",
            "+590590431111",
            "+590590432222",
            "2026-11-22T11:00:00Z",
        ),
        (
            "BL",
            "+590590271111",
            "+590590272222",
            "2026-11-22T11:00:00Z",
        ),
        ("PM", "+508411111", "+508412222", "2026-11-22T10:00:00Z"),
    ] {
        assert_eq!(
            crate::number::normalize_international(number)
                .unwrap()
                .region
                .as_str(),
            region
        );
        let config = config(&format!(
            r#"
[[campaign]]
id = "c"
controller = "acme"
purpose = "marketing"
default_region = "{region}"
destinations = ["{region}"]
caller_ids = ["{caller}"]
"#
        ));
        let with_consent = ContactView {
            consents: vec![consent(number)],
            ..ContactView::default()
        };
        let call = |contacts: &ContactView, at: &str, attempts: &[Timestamp]| {
            decide(&config, "c", number, caller, contacts, attempts, at)
        };
        let sunday = call(&with_consent, sunday_0700, &[]);
        assert!(
            codes(&sunday).contains(&ReasonCode::OutsideCallingHours),
            "{region}: {:?}",
            sunday.reasons
        );
        // Monday 23 November, 11:00 there (UTC-4, PM UTC-3).
        let monday_1100 = if region == "PM" {
            "2026-11-23T14:00:00Z"
        } else {
            "2026-11-23T15:00:00Z"
        };
        let monday = call(&with_consent, monday_1100, &[]);
        assert_eq!(
            monday.verdict,
            Verdict::Allow,
            "{region}: {:?}",
            monday.reasons
        );
        let four: Vec<Timestamp> = (1..=4)
            .map(|d| format!("2026-11-{:02}T15:00:00Z", 10 + d).parse().unwrap())
            .collect();
        assert!(
            codes(&call(&with_consent, monday_1100, &four)).contains(&ReasonCode::AttemptLimit),
            "{region}"
        );
        assert_eq!(
            call(&ContactView::default(), monday_1100, &[]).verdict,
            Verdict::Deny,
            "{region}: consent required"
        );
    }
}

/// A `[destination.FR]` override (a law change the product does not know
/// yet) applies in the overseas departments too, in their own time zone:
/// looked up under their own codes alone, Réunion went on under the
/// built-in French statute (found by review). An override of Réunion's
/// own beside France's is refused.
#[test]
fn test_a_french_override_applies_in_the_overseas_departments() {
    let campaign = r#"
[[campaign]]
id = "re"
controller = "acme"
purpose = "marketing"
default_region = "RE"
destinations = ["RE"]
consent_required = true
caller_ids = ["+262262123456"]
"#;
    let config = config(&format!(
        r#"
[destination.FR]
from = "2027-01-01"
source = "a decree ahead: closed on Fridays, 2 calls in 30 days"
attempt_limit = {{ max_attempts = 2, window_days = 30 }}
[destination.FR.calling_hours]
fri = []
{campaign}"#
    ));
    let number = "+262692123456";
    let contacts = ContactView {
        consents: vec![consent(number)],
        ..ContactView::default()
    };
    let call = |at: &str, attempts: &[Timestamp]| {
        decide(
            &config,
            "re",
            number,
            "+262262123456",
            &contacts,
            attempts,
            at,
        )
    };
    // Friday 8 January 2027, 11:00 in Réunion (UTC+4): closed by the
    // override.
    let friday = call("2027-01-08T07:00:00Z", &[]);
    assert!(
        codes(&friday).contains(&ReasonCode::OutsideCallingHours),
        "{:?}",
        friday.reasons
    );
    // A Friday before the override's day: open under the statute.
    let old_friday = call("2026-11-27T07:00:00Z", &[]);
    assert_eq!(
        old_friday.verdict,
        Verdict::Allow,
        "{:?}",
        old_friday.reasons
    );
    // Reported under the section that sets it (there is no [destination.RE]).
    let policies = Policies::compile(&config);
    let era = policies
        .era(
            "re",
            number::Region::parse("RE").unwrap(),
            "2027-01-08T07:00:00Z".parse().unwrap(),
        )
        .unwrap();
    let shown = format!("{era:?}");
    assert!(
        shown.contains("destination.FR.calling_hours") && !shown.contains("destination.RE"),
        "{shown}"
    );
    // Two calls in 30 days are the override's cap.
    let two: Vec<Timestamp> = ["2027-01-04T07:00:00Z", "2027-01-05T07:00:00Z"]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(codes(&call("2027-01-11T07:00:00Z", &two)).contains(&ReasonCode::AttemptLimit));
    // An override of Réunion's own beside it is refused.
    let both = Config::parse(
        &format!(
            r#"
[destination.FR]
source = "a decree"
[destination.FR.calling_hours]
fri = []
[destination.RE]
source = "regional holidays"
extra_holidays = ["2027-03-01"]
{campaign}"#
        ),
        "test.toml",
        std::path::Path::new("/tmp"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        both.contains("destination.RE") && both.contains("destination.FR"),
        "{both}"
    );
}

/// An override's `from` for a destination without a statute begins at
/// midnight there, in the one clock of its numbers: it began at midnight
/// UTC, an hour late in Amsterdam, nine in Tokyo (found by review). Where
/// the numbers run on several clocks (+7), a dated override is refused.
#[test]
fn test_an_override_of_a_destination_without_a_statute_begins_at_its_midnight() {
    let config = config(
        r#"
[destination.NL]
from = "2027-01-01"
source = "a law ahead: weekdays 09-20"
[destination.NL.calling_hours]
mon = ["09:00-20:00"]
tue = ["09:00-20:00"]
wed = ["09:00-20:00"]
thu = ["09:00-20:00"]
fri = ["09:00-20:00"]

[[campaign]]
id = "nl"
controller = "acme"
purpose = "marketing"
default_region = "NL"
destinations = ["NL"]
consent_required = true
caller_ids = ["+31201234567"]
"#,
    );
    let number = "+31612345678";
    let contacts = ContactView {
        consents: vec![consent(number)],
        ..ContactView::default()
    };
    let call = |at: &str| decide(&config, "nl", number, "+31201234567", &contacts, &[], at);
    // 23:30 UTC on 31 December 2026 is 00:30 on 1 January in Amsterdam.
    let first_night = call("2026-12-31T23:30:00Z");
    assert!(
        codes(&first_night).contains(&ReasonCode::OutsideCallingHours),
        "{:?}",
        first_night.reasons
    );
    // 22:30 UTC is still 31 December there: no window yet.
    let before = call("2026-12-31T22:30:00Z");
    assert_eq!(before.verdict, Verdict::Allow, "{:?}", before.reasons);
    let several = Config::parse(
        r#"
[destination.RU]
from = "2027-01-01"
source = "a law ahead"
[destination.RU.calling_hours]
mon = ["09:00-20:00"]
"#,
        "test.toml",
        std::path::Path::new("/tmp"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        several.contains("destination.RU.from") && several.contains("several clocks"),
        "{several}"
    );
}

/// A day whose midnight no instant holds (9999-12-31 east of UTC) lies
/// after every instant: an override dated then was in force from the
/// start of time, a Sunday call allowed (found by review). Such a `from`
/// is refused at load, and the compiled era never begins before it.
#[test]
fn test_an_override_dated_past_every_instant_is_never_in_force_early() {
    let last = jiff::civil::date(9999, 12, 31);
    assert_eq!(super::midnight(last, "Europe/Rome"), Timestamp::MAX);
    assert_eq!(super::midnight(last, "UTC"), Timestamp::MAX);
    assert!(super::midnight(jiff::civil::date(2026, 11, 29), "Europe/Rome") < Timestamp::MAX);
    let refused = Config::parse(
        r#"
[destination.IT]
from = "9999-12-31"
source = "staged, not yet"
[destination.IT.calling_hours]
sun = ["09:00-20:00"]
"#,
        "test.toml",
        std::path::Path::new("/tmp"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("destination.IT.from") && refused.contains("9998-12-31"),
        "{refused}"
    );
}

/// Spain's holidays are largely regional: Holy Thursday is one in every
/// community but Catalonia (and, some years, Valencia), Easter Monday in
/// several, and a national holiday falling on a Sunday is moved to the
/// Monday in many. They were called (found by review: a Madrid number on
/// Holy Thursday 2026, a Barcelona one on Easter Monday); the statute now
/// closes them everywhere, the stricter reading.
#[test]
fn test_spains_widely_kept_regional_holidays_are_closed() {
    let config = config(
        r#"
[[campaign]]
id = "es"
controller = "acme"
purpose = "marketing"
default_region = "ES"
destinations = ["ES"]
caller_ids = ["+34912345678"]
"#,
    );
    for number in ["+34915550123", "+34935550123"] {
        let contacts = ContactView {
            consents: vec![consent(number)],
            ..ContactView::default()
        };
        let call = |at: &str| decide(&config, "es", number, "+34912345678", &contacts, &[], at);
        // 10:00 in Madrid and Barcelona.
        for open in [
            "2026-04-01T08:00:00Z",
            "2026-04-07T08:00:00Z",
            "2026-11-03T09:00:00Z",
        ] {
            let decision = call(open);
            assert_eq!(
                decision.verdict,
                Verdict::Allow,
                "{number} {open}: {:?}",
                decision.reasons
            );
        }
        for closed in [
            "2026-04-02T08:00:00Z", // Jueves Santo
            "2026-04-06T08:00:00Z", // Lunes de Pascua
            "2026-11-02T09:00:00Z", // Todos los Santos fell on Sunday 1 November
            "2026-12-07T09:00:00Z", // Día de la Constitución fell on Sunday 6 December
        ] {
            let decision = call(closed);
            assert!(
                codes(&decision).contains(&ReasonCode::OutsideCallingHours),
                "{number} {closed}: {:?}",
                decision.reasons
            );
        }
    }
}

/// Connecticut allows telephonic sales calls 09:00-20:00 only (from 1 Oct
/// 2023): a Hartford number at 08:30 was called on the federal window
/// (found by review); New York's at the same instant still is.
#[test]
fn test_connecticut_window() {
    let config = config(
        r#"
[[registry]]
id = "us-dnc"
kind = "blocklist"
country = "US"

[[campaign]]
id = "us"
controller = "acme"
purpose = "marketing"
default_region = "US"
destinations = ["US"]
caller_ids = ["+12125550100"]
"#,
    );
    let nobody = ContactView::default();
    let hours = |number: &str, at: &str| {
        codes(&decide(
            &config,
            "us",
            number,
            "+12125550100",
            &nobody,
            &[],
            at,
        ))
        .contains(&ReasonCode::OutsideCallingHours)
    };
    // Tuesday 24 November 2026, 08:30 and 09:30 Eastern; 20:30 Eastern.
    assert!(
        hours("860 555 0123", "2026-11-24T13:30:00Z"),
        "08:30 in Hartford"
    );
    assert!(
        !hours("860 555 0123", "2026-11-24T14:30:00Z"),
        "09:30 in Hartford"
    );
    assert!(
        hours("860 555 0123", "2026-11-25T01:30:00Z"),
        "20:30 in Hartford"
    );
    assert!(
        !hours("212 555 0123", "2026-11-24T13:30:00Z"),
        "08:30 in New York"
    );
}
