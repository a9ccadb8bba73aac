//! The CheckCall decision path (normalisation, whereabouts, every rule) on
//! arbitrary called numbers, caller IDs and instants: never a panic, and
//! every decision names at least one reason.
#![no_main]

use dialgate::config::Config;
use dialgate::decision::StandaloneDecider;
use libfuzzer_sys::fuzz_target;

/// An Italian and US campaign (the RPO and DNC configured, no data loaded),
/// stores in a directory of its own under the system's temporary directory.
static DECIDER: std::sync::LazyLock<StandaloneDecider> = std::sync::LazyLock::new(|| {
    let config = Config::parse(
        "[[registry]]\nid = \"it-rpo\"\nkind = \"allowlist\"\ncountry = \"IT\"\n\
         [[registry]]\nid = \"us-dnc\"\nkind = \"blocklist\"\ncountry = \"US\"\n\
         [[campaign]]\nid = \"it\"\ncontroller = \"acme\"\npurpose = \"marketing\"\n\
         default_region = \"IT\"\ndestinations = [\"IT\", \"US\"]\ncaller_ids = [\"+390212345678\"]\n",
        "fuzz",
        std::path::Path::new("."),
    )
    .expect("fuzz config");
    let dir = std::env::temp_dir().join(format!("dialgate-fuzz-{}", std::process::id()));
    StandaloneDecider::open(config, &dir).expect("fuzz stores")
});

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
    for memoise in [false, true] {
        let evaluation = DECIDER.decide(campaign_id, called_number, Some(caller_id), now, memoise);
        assert!(
            !evaluation.reasons.is_empty(),
            "every decision names a reason"
        );
    }
});
