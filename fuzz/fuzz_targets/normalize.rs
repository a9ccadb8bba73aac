//! Number normalisation on arbitrary text, in every mode and a few regions.
#![no_main]

use dialgate::number::{self, Region};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for code in ["IT", "US", "GB", "FR"] {
        let region = Region::parse(code).expect("known region");
        if let Ok(n) = number::normalize(text, region) {
            assert!(n.e164.starts_with('+') && n.e164.len() <= 16, "{n:?}");
            // No country code begins with 0: one number, one key.
            assert!(!n.e164[1..].starts_with('0'), "{n:?}");
            assert_eq!(number::NumberKey::from_e164(&n.e164), Some(n.key));
        }
        let _ = number::normalize_any(text, region);
    }
    let _ = number::normalize_international(text);
});
