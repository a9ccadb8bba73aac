//! A run of a screened list decides as one call at a time: the setting kept
//! from one number for the next (see [`crate::decision::RunSetting`]) must never
//! carry one campaign's rules, one region's registries or one instant's law
//! over to a number it does not fit.

use std::path::Path;

use jiff::{SignedDuration, Timestamp, ToSpan};
use proptest::prelude::*;

use super::StandaloneDecider;
use crate::config::Config;
use crate::contacts::{Consent, ContactStore};
use crate::model::Purpose;
use crate::number::NumberKey;
use crate::registry::import::{self, ImportRequest};
use crate::registry::snapshot::ImportMode;

const CONFIG: &str = r#"
[[registry]]
id = "it-rpo"
kind = "allowlist"
country = "IT"

[[registry]]
id = "fr-bloctel"
kind = "blocklist"
country = "FR"
valid_days = 30

[[campaign]]
id = "it"
controller = "acme"
purpose = "marketing"
default_region = "IT"
destinations = ["IT"]
caller_ids = ["+390212345678"]

[[campaign]]
id = "eu"
controller = "acme"
purpose = "marketing"
default_region = "FR"
destinations = ["IT", "FR", "DE"]
caller_ids = ["+390212345678"]

[[campaign]]
id = "other"
controller = "globex"
purpose = "marketing"
default_region = "IT"
destinations = ["IT", "DE"]
caller_ids = ["+390212345678"]
"#;

/// Numbers of every kind: cleared, not cleared, listed, other regions,
/// national notations (read in each campaign's region), invalid.
const NUMBERS: [&str; 10] = [
    "+393331234567",
    "+393330000000",
    "+33612345678",
    "+33612000000",
    "+4915112345678",
    "+12125550123",
    "3331234567",
    "0612345678",
    "bogus",
    "+393339999999",
];

const CAMPAIGNS: [&str; 4] = ["it", "eu", "other", "missing"];

/// A decider with registry data for Italy (cleared for acme only) and
/// France, and consents for some numbers.
fn decider(dir: &Path, today: jiff::civil::Date) -> StandaloneDecider {
    let config = Config::parse(CONFIG, "test", Path::new(".")).unwrap();
    let snapshots = crate::registry::snapshots_dir(dir);
    std::fs::create_dir_all(&snapshots).unwrap();
    for (id, controller, numbers) in [
        ("it-rpo", Some("acme"), "+393331234567\n+393339999999\n"),
        ("fr-bloctel", None, "+33612000000\n"),
    ] {
        let file = dir.join(format!("{id}.txt"));
        std::fs::write(&file, numbers).unwrap();
        let request = ImportRequest {
            file,
            format: None,
            mode: ImportMode::Replace,
            checked_at: today.yesterday().unwrap(),
            controller: controller.map(String::from),
            covers: controller.is_none().then(|| vec!["+33".to_string()]),
            dry_run: false,
            max_rejects: 0,
            rejects_file: None,
            progress: false,
            allow_shrink: false,
            max_shrink_percent: 100,
            changes_since: None,
            // A one-number list standing for the whole of France.
            allow_narrow_file: true,
            older_than_replace: false,
            accept_unterminated_last_line: false,
            withheld: Default::default(),
        };
        let registry = config.registry(id).unwrap();
        import::run(registry, &snapshots, &request, Timestamp::now()).unwrap();
    }
    let store = ContactStore::open(dir).unwrap();
    let granted: Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
    for (n, number) in ["+393330000000", "+4915112345678", "+33612345678"]
        .iter()
        .enumerate()
    {
        let consent = Consent {
            consent_id: format!("c-{n}"),
            controller: "acme".into(),
            number: (*number).into(),
            purpose: Purpose::Marketing,
            granted_at: granted,
            revoked_at: None,
            expires_at: None,
            source: "web".into(),
            supplier: String::new(),
            method: "checkbox".into(),
            notice_version: "v1".into(),
            evidence_ref: format!("e-{n}"),
            recorded_at: granted,
        };
        store
            .record_consent(NumberKey::from_e164(number).unwrap(), consent, "test")
            .unwrap();
    }
    drop(store);
    StandaloneDecider::open(config, dir).unwrap()
}

static DECIDER: std::sync::LazyLock<(StandaloneDecider, Timestamp)> =
    std::sync::LazyLock::new(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let now = Timestamp::now();
        let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        (decider(dir.path(), today), now)
    });

/// Instants around `now`: inside and outside calling windows, before the
/// registries' check day, after their data went stale, and on both sides
/// of France's change to opt-in (11 August 2026).
fn instant(now: Timestamp, which: usize) -> Timestamp {
    let offsets = [0, 3, 9, 14, -30, 24 * 40];
    match offsets.get(which) {
        Some(hours) => now + SignedDuration::from_hours(*hours),
        None if which == offsets.len() => "2026-08-10T10:00:00Z".parse().unwrap(),
        None => "2026-08-12T10:00:00Z".parse::<Timestamp>().unwrap() + 1.hour(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_run_decides_as_one_call_at_a_time(
        calls in prop::collection::vec((0..CAMPAIGNS.len(), 0..NUMBERS.len(), 0..8usize), 1..24)
    ) {
        let (decider, now) = &*DECIDER;
        let calls: Vec<(&str, &str, Timestamp)> = calls
            .iter()
            .map(|&(c, n, t)| (CAMPAIGNS[c], NUMBERS[n], instant(*now, t)))
            .collect();
        let run = decider.decide_run(&calls);
        for (call, in_run) in calls.iter().zip(run) {
            let alone = decider.decide(call.0, call.1, None, call.2, true);
            prop_assert_eq!(in_run, alone, "{:?}", call);
        }
    }
}

/// The fixture is not vacuous: it allows some calls and denies others.
#[test]
fn test_the_run_fixture_allows_and_denies() {
    let (decider, now) = &*DECIDER;
    let mut verdicts = std::collections::BTreeSet::new();
    for campaign in CAMPAIGNS {
        for number in NUMBERS {
            for which in 0..8 {
                let evaluation = decider.decide(campaign, number, None, instant(*now, which), true);
                verdicts.insert(evaluation.verdict.as_str());
            }
        }
    }
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
}
