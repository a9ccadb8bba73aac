//! Property tests: no input makes the parsers panic (number normalisation,
//! every registry format, snapshot files, configuration, CSV imports).

use dialgate::config::Config;
use dialgate::number::{self, Region};
use dialgate::registry::formats::{DelimitedTemplate, FixedTemplate, Format, LineParser};
use proptest::prelude::*;

/// A contact store for the CSV property test (dry runs store nothing).
static STORE: std::sync::LazyLock<dialgate::contacts::ContactStore> =
    std::sync::LazyLock::new(|| {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        dialgate::contacts::ContactStore::open(dir.path()).unwrap()
    });

/// One decider for every case: an Italian campaign with the RPO configured
/// (no data loaded), stores in a temporary directory kept for the run.
static DECIDER: std::sync::LazyLock<dialgate::decision::StandaloneDecider> =
    std::sync::LazyLock::new(|| {
        let config = Config::parse(
            "[[registry]]\nid = \"it-rpo\"\nkind = \"allowlist\"\ncountry = \"IT\"\n\
             [[campaign]]\nid = \"it\"\ncontroller = \"acme\"\npurpose = \"marketing\"\n\
             default_region = \"IT\"\ndestinations = [\"IT\"]\ncaller_ids = [\"+390212345678\"]\n",
            "property test",
            std::path::Path::new("."),
        )
        .unwrap();
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        dialgate::decision::StandaloneDecider::open(config, dir.path()).unwrap()
    });

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

    /// Consent CSV files with arbitrary headers (duplicates, unknown and
    /// missing columns) and rows: an error naming the problem, never a panic.
    #[test]
    fn consent_csv_never_panics(
        header in prop::sample::subsequence(vec!["controller", "number", "purpose", "granted_at", "source", "number", "bogus", "expires_at"], 0..8),
        rows in prop::collection::vec("[a-z0-9+ ,:\"-]{0,60}", 0..6),
    ) {
        let store = &*STORE;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consents.csv");
        let mut text = header.join(",");
        for row in rows {
            text.push('\n');
            text.push_str(&row);
        }
        std::fs::write(&path, text).unwrap();
        let _ = dialgate::contacts::import::import_consents(store, &path, "property test", jiff::Timestamp::now(), true, &dialgate::contacts::service::Spellings::default());
    }

    /// The CheckCall decision path on arbitrary numbers, caller IDs and
    /// campaign ids, through the same gather step and rules as the server.
    #[test]
    fn decision_path_never_panics(number in ".{0,30}", caller_id in ".{0,30}", campaign_id in prop::sample::select(vec!["it", "nope", ""])) {
        let now = jiff::Timestamp::now();
        for memoise in [false, true] {
            let evaluation = DECIDER.decide(campaign_id, &number, Some(&caller_id), now, memoise);
            prop_assert!(!evaluation.reasons.is_empty(), "every decision names a reason");
        }
    }
}
