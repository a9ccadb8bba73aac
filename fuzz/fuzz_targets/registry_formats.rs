//! Every registry line format (and format detection) on arbitrary lines, and
//! whole files: bounded line length and error excerpts, and `auto` never
//! refusing a file `lines` accepts.
#![no_main]

use dialgate::number::Region;
use dialgate::registry::formats::{DelimitedTemplate, FixedTemplate, Format, LineParser};
use dialgate::registry::import;
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
        let lines = import::parse(data, Some(Format::Lines), region, false);
        let auto = import::parse(data, None, region, false);
        match (&lines, &auto) {
            (Ok((_, lines)), Ok((_, auto))) => {
                if lines.reject_count == 0 {
                    assert_eq!(auto.reject_count, 0, "auto refused what lines accepts");
                }
                for reject in lines.rejects.iter().chain(&auto.rejects) {
                    assert!(reject.problem.len() < 1024, "problem not bounded");
                }
            }
            (Err(a), Err(b)) => {
                // Only an overlong line fails a whole parse; the message is short.
                assert!(a.to_string().len() < 512 && b.to_string().len() < 512);
            }
            _ => panic!("lines and auto disagree on an overlong line"),
        }
    }
});
