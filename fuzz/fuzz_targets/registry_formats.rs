//! Every registry line format (and format detection) on arbitrary lines.
#![no_main]

use dialgate::number::Region;
use dialgate::registry::formats::{DelimitedTemplate, FixedTemplate, Format, LineParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for code in ["IT", "US", "GB"] {
        let region = Region::parse(code).expect("known region");
        let formats = [
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
        ];
        for line in text.lines() {
            for format in formats.clone() {
                let _ = LineParser::new(format, region).parse(line, 2);
            }
            let _ = Format::detect(line, region);
        }
    }
});
