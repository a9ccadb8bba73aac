//! Property tests: no input makes the parsers panic (number normalisation,
//! every registry format, snapshot files, configuration, CSV imports).

use dialgate::config::Config;
use dialgate::number::{self, Region};
use dialgate::registry::formats::{DelimitedTemplate, FixedTemplate, Format, LineParser};
use proptest::prelude::*;

fn formats() -> Vec<Format> {
    vec![
        Format::Lines,
        Format::Ftc,
        Format::Tps,
        Format::Delimited(DelimitedTemplate {
            delimiter: b',',
            area: Some(1),
            number: Some(2),
            action: Some(3),
            add_values: vec!["A".into()],
            remove_values: vec!["D".into()],
            ..Default::default()
        }),
        Format::Fixed(FixedTemplate {
            phone: Some((2, 10)),
            ..Default::default()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalisation_never_panics(input in ".{0,40}", region in prop::sample::select(vec!["IT", "US", "GB", "FR", "DE", "ES"])) {
        let region = Region::parse(region).unwrap();
        let _ = number::normalize(&input, region);
        let _ = number::normalize_any(&input, region);
        let _ = number::normalize_international(&input);
    }

    #[test]
    fn phone_like_input_never_panics(input in "[+0-9 ()./-]{0,24}") {
        let it = Region::parse("IT").unwrap();
        if let Ok(n) = number::normalize(&input, it) {
            prop_assert!(n.e164.starts_with('+'));
            prop_assert!(n.e164.len() <= 16);
        }
    }

    #[test]
    fn registry_lines_never_panic(line in ".{0,40}", region in prop::sample::select(vec!["IT", "US", "GB"])) {
        let region = Region::parse(region).unwrap();
        for format in formats() {
            let _ = LineParser::new(format, region).parse(&line, 2);
        }
        let _ = Format::detect(&line, region);
    }

    #[test]
    fn snapshot_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut framed = b"DGSNAP\x00\x01".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = dialgate::registry::file::decode(&framed, std::path::Path::new("fuzz"));
        let _ = dialgate::registry::file::decode(&bytes, std::path::Path::new("fuzz"));
    }

    #[test]
    fn config_text_never_panics(text in "[a-z_\\[\\]=\" .0-9:\\n-]{0,200}") {
        let _ = Config::parse(&text, "fuzz", std::path::Path::new("."));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The CheckCall decision path on arbitrary numbers, caller IDs and campaign ids.
    #[test]
    fn decision_path_never_panics(number in ".{0,30}", caller_id in ".{0,30}", campaign_id in prop::sample::select(vec!["it", "nope", ""])) {
        use dialgate::calling::zones;
        use dialgate::config::CampaignConfig;
        use dialgate::model::Purpose;
        use dialgate::rules::{evaluate, CallInput, DecisionData};
        let it = Region::parse("IT").unwrap();
        let campaign = CampaignConfig {
            id: "it".into(),
            controller: "acme".into(),
            purpose: Purpose::Marketing,
            default_region: it,
            destinations: vec![it],
            consent_required: false,
            caller_ids: vec!["+390212345678".into()],
            calling_hours: None,
            attempt_limit: None,
        };
        let campaign = (campaign_id == "it").then_some(&campaign);
        let called = match campaign {
            Some(c) => number::normalize(&number, c.default_region),
            None => number::normalize_international(&number),
        };
        let policies = dialgate::policy::Policies::compile(&dialgate::config::Config::with(campaign.into_iter().cloned().collect(), Vec::new()));
        let now = jiff::Timestamp::now();
        let (era, whereabouts) = match (&called, campaign) {
            (Ok(n), Some(c)) => (policies.era(&c.id, n.region, now), zones::locate(n.region.as_str(), &n.e164[1..])),
            _ => (None, Default::default()),
        };
        let evaluation = evaluate(
            &CallInput { campaign_id, campaign, called: &called, caller_id: Some(&caller_id) },
            &DecisionData {
                contacts: &Default::default(),
                registries: &[],
                era,
                whereabouts: &whereabouts,
                attempts: &[],
                first_not_cleared: &[],
                window_memo: None,
            },
            now,
        );
        prop_assert!(!evaluation.reasons.is_empty(), "every decision names a reason");
    }
}
