//! The CheckCall decision path (normalisation, whereabouts, every rule) on
//! arbitrary called numbers, caller IDs and instants: never a panic, and
//! every decision names at least one reason.
#![no_main]

use dialgate::calling::{WindowMemo, zones};
use dialgate::config::{CampaignConfig, Config};
use dialgate::policy::Policies;
use dialgate::model::Purpose;
use dialgate::number::{self, Region};
use dialgate::rules::{CallInput, DecisionData, evaluate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "number|caller id|campaign|seconds since the epoch"
    let mut fields = text.splitn(4, '|');
    let called_number = fields.next().unwrap_or_default();
    let caller_id = fields.next().unwrap_or_default();
    let campaign_id = fields.next().unwrap_or_default();
    let seconds: i64 = fields
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_795_000_000);
    let Ok(now) = jiff::Timestamp::from_second(seconds.rem_euclid(7_000_000_000)) else {
        return;
    };
    let it = Region::parse("IT").expect("known region");
    let us = Region::parse("US").expect("known region");
    let campaign = CampaignConfig {
        id: "it".into(),
        controller: "acme".into(),
        purpose: Purpose::Marketing,
        default_region: it,
        destinations: vec![it, us],
        consent_required: false,
        caller_ids: vec!["+390212345678".into()],
        calling_hours: None,
        attempt_limit: None,
    };
    let campaign = (campaign_id == "it").then_some(&campaign);
    let called = match campaign {
        Some(c) => number::normalize(called_number, c.default_region),
        None => number::normalize_international(called_number),
    };
    let policies = Policies::compile(&Config::with(campaign.into_iter().cloned().collect(), Vec::new()));
    let (era, whereabouts) = match (&called, campaign) {
        (Ok(n), Some(c)) => (
            policies.era(&c.id, n.region, now),
            zones::locate(n.region.as_str(), &n.e164[1..]),
        ),
        _ => (None, Default::default()),
    };
    let memo = WindowMemo::default();
    for window_memo in [None, Some(&memo)] {
        let evaluation = evaluate(
            &CallInput {
                campaign_id,
                campaign,
                called: &called,
                caller_id: Some(caller_id),
            },
            &DecisionData {
                contacts: &Default::default(),
                registries: &[],
                era,
                whereabouts: &whereabouts,
                attempts: &[],
                first_not_cleared: &[],
                window_memo,
            },
            now,
        );
        assert!(
            !evaluation.reasons.is_empty(),
            "every decision names a reason"
        );
    }
});
