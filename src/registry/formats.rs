//! Registry file formats: each line becomes a number to add, a number to
//! remove, or nothing. Numbers are turned into exact lookup keys; NANP numbers
//! (US DNC) take a fast path without regular expressions.

use crate::number::{self, NumberKey, Region};

/// A column layout for delimited files (1-based column numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelimitedTemplate {
    pub delimiter: u8,
    /// The whole number in one column...
    pub phone: Option<usize>,
    /// ... or an area code and the rest in two.
    pub area: Option<usize>,
    pub number: Option<usize>,
    /// Change lists: a column saying whether the line adds or removes.
    pub action: Option<usize>,
    pub add_values: Vec<String>,
    pub remove_values: Vec<String>,
    /// Lines to skip at the top (headers).
    pub skip_lines: usize,
}

/// A fixed-width layout (1-based start, length).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixedTemplate {
    pub phone: Option<(usize, usize)>,
    pub area: Option<(usize, usize)>,
    pub number: Option<(usize, usize)>,
}

/// A registry file format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One number per line, any common notation; `#` comments.
    Lines,
    /// US FTC full list: `NPA,NXXXXXX` or a bare 10-digit number per line.
    Ftc,
    /// UK TPS/CTPS fixed width: a 5-character dialling code and a
    /// 7-character remainder, or the whole national number padded to 12.
    Tps,
    Delimited(DelimitedTemplate),
    Fixed(FixedTemplate),
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Lines => "lines",
            Format::Ftc => "ftc",
            Format::Tps => "tps",
            Format::Delimited(_) => "delimited",
            Format::Fixed(_) => "fixed",
        }
    }

    /// Whether lines say whether they add or delete (a change list).
    pub fn is_change_list(&self) -> bool {
        matches!(self, Format::Delimited(template) if template.action.is_some())
    }

    /// Guesses the format from the first significant line, where unambiguous.
    pub fn detect(first_line: &str, region: Region) -> Format {
        let line = first_line.trim_end_matches(['\r', '\n']);
        let bytes = line.as_bytes();
        let is_ftc = (bytes.len() == 11
            && bytes[3] == b','
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 3 || b.is_ascii_digit()))
            || (bytes.len() == 10
                && bytes.iter().all(u8::is_ascii_digit)
                && region.calling_code() == 1);
        if is_ftc && region.calling_code() == 1 {
            return Format::Ftc;
        }
        if region.as_str() == "GB"
            && line.len() >= 12
            && line.starts_with('0')
            && line.as_bytes()[..12]
                .iter()
                .all(|b| b.is_ascii_digit() || *b == b' ')
            && line.get(12..).is_some_and(|rest| rest.trim().is_empty())
        {
            return Format::Tps;
        }
        Format::Lines
    }

    /// A TPS number field (12 characters of digits and spaces, starting
    /// with 0) followed by more on the line: in a file detected as TPS,
    /// read whole by the general parser, the digits after the field were
    /// joined to the number (`0169772345  1` became +441697723451, another
    /// number, and the registered one went unlisted; found by review). Such
    /// a line that reads as two different numbers is refused; one that
    /// reads as one (`020 7946 0019`) is taken.
    pub fn tps_field_with_more(line: &str) -> bool {
        let line = line.trim_end_matches(['\r', '\n']);
        // Padded in front too (`  0169772345 1`): the TPS reading takes it
        // (found by review).
        line.len() > 12
            && line.as_bytes()[..12]
                .iter()
                .all(|b| b.is_ascii_digit() || *b == b' ')
            && line.as_bytes()[..12].iter().any(u8::is_ascii_digit)
            && line.get(12..).is_some_and(|rest| !rest.trim().is_empty())
    }
}

/// The longest excerpt of an input line quoted in an error.
pub const EXCERPT_CHARS: usize = 48;

/// A line (or part of one) quoted in an error: debug-escaped, at most
/// [`EXCERPT_CHARS`] characters, with the full length when cut, and its
/// digits but the last two masked (the numbers are personal data; the line
/// number finds it in the file): `"+** *** *** **67"`.
pub struct Quoted<'a>(&'a str);

/// Quotes `text` for an error message (see [`Quoted`]).
pub fn quoted(text: &str) -> Quoted<'_> {
    Quoted(text)
}

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (excerpt, cut) = match self.0.char_indices().nth(EXCERPT_CHARS) {
            None => (self.0, false),
            Some((cut, _)) => (&self.0[..cut], true),
        };
        // Any digit (full-width ones too: refused, but still a number).
        let digits = excerpt.chars().filter(|c| c.is_numeric()).count();
        let mut seen = 0;
        let masked: String = excerpt
            .chars()
            .map(|c| {
                if !c.is_numeric() {
                    return c;
                }
                seen += 1;
                if seen + 2 > digits { c } else { '*' }
            })
            .collect();
        if cut {
            write!(f, "{masked:?}... ({} bytes)", self.0.len())
        } else {
            write!(f, "{masked:?}")
        }
    }
}

/// What one line means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineItem {
    Skip,
    Add(NumberKey),
    Remove(NumberKey),
}

/// Turns lines of one format into keys of numbers of one region.
#[derive(Debug)]
pub struct LineParser {
    format: Format,
    numbers: NumberParser,
}

/// Keys from numbers of one region, with a per-area-code cache for NANP.
#[derive(Debug)]
struct NumberParser {
    region: Region,
    /// NANP area codes already known to belong to `region`.
    npa_ok: Vec<bool>,
}

impl LineParser {
    pub fn new(format: Format, region: Region) -> LineParser {
        LineParser {
            format,
            numbers: NumberParser {
                region,
                npa_ok: vec![false; 1000],
            },
        }
    }

    /// Parses one line (without its line break).
    ///
    /// # Errors
    /// A description of what is wrong with the line.
    pub fn parse(&mut self, line: &str, line_number: u64) -> Result<LineItem, String> {
        let line = line.trim_end_matches('\r');
        let numbers = &mut self.numbers;
        match &self.format {
            Format::Lines => {
                let text = line.trim();
                if text.is_empty() || text.starts_with('#') {
                    return Ok(LineItem::Skip);
                }
                numbers.any_notation(text).map(LineItem::Add)
            }
            Format::Ftc => {
                let text = line.trim();
                if text.is_empty() {
                    return Ok(LineItem::Skip);
                }
                numbers.ftc(text).map(LineItem::Add)
            }
            Format::Tps => {
                if line.trim().is_empty() {
                    return Ok(LineItem::Skip);
                }
                let head = line.get(..12.min(line.len())).unwrap_or(line);
                if head.len() < 12 && line.trim().len() < 10 {
                    return Err(format!(
                        "{}: shorter than the 12-character number field",
                        quoted(line)
                    ));
                }
                if let Some(bad) = head.chars().find(|c| !c.is_ascii_digit() && *c != ' ') {
                    return Err(format!(
                        "{}: unexpected {bad:?} in the number field",
                        quoted(line)
                    ));
                }
                let national: String = head.chars().filter(char::is_ascii_digit).collect();
                numbers.national(&national).map(LineItem::Add)
            }
            Format::Delimited(template) => {
                if line.trim().is_empty() {
                    return Ok(LineItem::Skip);
                }
                let skipped = line_number <= template.skip_lines as u64;
                let fields: Vec<&str> = line
                    .split(template.delimiter as char)
                    .map(str::trim)
                    .collect();
                let column = |n: usize| -> Result<&str, String> {
                    fields.get(n - 1).copied().ok_or_else(|| {
                        format!("{}: no column {n} ({} columns)", quoted(line), fields.len())
                    })
                };
                let key = match (template.phone, template.area, template.number) {
                    (Some(phone), _, _) => column(phone).and_then(|c| numbers.any_notation(c)),
                    (None, Some(area), Some(number)) => column(area)
                        .and_then(|area| numbers.national(&format!("{area}{}", column(number)?))),
                    _ => Err("template needs a phone column or area and number columns".into()),
                };
                // A header holds no number: a line --skip-lines skips that
                // holds one is data (a file without the header), which
                // would otherwise be dropped without a word.
                if skipped {
                    return match key {
                        Ok(_) => Err(format!(
                            "{}: line {line_number} holds a number but --skip-lines {} skips it (is the header missing?)",
                            quoted(line),
                            template.skip_lines
                        )),
                        Err(_) => Ok(LineItem::Skip),
                    };
                }
                let key = key?;
                match template.action {
                    None => Ok(LineItem::Add(key)),
                    Some(action) => {
                        let value = column(action)?;
                        if template
                            .add_values
                            .iter()
                            .any(|v| v.eq_ignore_ascii_case(value))
                        {
                            Ok(LineItem::Add(key))
                        } else if template
                            .remove_values
                            .iter()
                            .any(|v| v.eq_ignore_ascii_case(value))
                        {
                            Ok(LineItem::Remove(key))
                        } else {
                            Err(format!(
                                "{}: action {} is neither an addition nor a deletion",
                                quoted(line),
                                quoted(value)
                            ))
                        }
                    }
                }
            }
            Format::Fixed(template) => {
                if line.trim().is_empty() {
                    return Ok(LineItem::Skip);
                }
                let fields = [template.phone, template.area, template.number];
                let in_a_field = |at: usize| {
                    fields
                        .iter()
                        .flatten()
                        .any(|&(start, len)| at >= start && at < start.saturating_add(len))
                };
                let slice = |(start, len): (usize, usize)| -> Result<&str, String> {
                    let end = start.saturating_add(len);
                    // A digit right before or after the field (outside the
                    // other number field) means the field cut a number: a
                    // 10-digit number read through 9 columns is another,
                    // valid number.
                    for at in [start.wrapping_sub(1), end] {
                        if at >= 1
                            && !in_a_field(at)
                            && line.as_bytes().get(at - 1).is_some_and(u8::is_ascii_digit)
                        {
                            return Err(format!(
                                "{}: a digit in column {at} runs on from the number field at columns {start}..{}: widen the field (a number of its own right beside it must be cut away first)",
                                quoted(line),
                                end - 1
                            ));
                        }
                    }
                    line.get(start - 1..(end - 1).min(line.len()))
                        .filter(|s| !s.is_empty())
                        .map(str::trim)
                        .ok_or_else(|| {
                            format!(
                                "{}: too short for columns {start}..{}",
                                quoted(line),
                                end - 1
                            )
                        })
                };
                let key = match (template.phone, template.area, template.number) {
                    (Some(phone), _, _) => numbers.any_notation(slice(phone)?)?,
                    (None, Some(area), Some(number)) => {
                        numbers.national(&format!("{}{}", slice(area)?, slice(number)?))?
                    }
                    _ => {
                        return Err("template needs a phone field or area and number fields".into());
                    }
                };
                Ok(LineItem::Add(key))
            }
        }
    }
}

impl NumberParser {
    /// Any common notation, with the registry's region as default.
    fn any_notation(&mut self, text: &str) -> Result<NumberKey, String> {
        if self.region.calling_code() == 1 {
            let plain = text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'));
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            if plain && digits.len() == 10 {
                return self.nanp(digits.as_bytes());
            }
        }
        let normalized = number::normalize_any(text, self.region)
            .map_err(|err| format!("{}: {err}", quoted(text)))?;
        if normalized.region != self.region {
            return Err(format!(
                "{} is a number of {}, not {}",
                quoted(text),
                normalized.region,
                self.region
            ));
        }
        Ok(normalized.key)
    }

    /// A national number in digits (trunk prefix allowed).
    fn national(&mut self, digits: &str) -> Result<NumberKey, String> {
        if self.region.calling_code() == 1 && digits.len() == 10 {
            return self.nanp(digits.as_bytes());
        }
        self.any_notation(digits)
    }

    /// `NPA,NXXXXXX` or 10 digits, without allocating.
    fn ftc(&mut self, text: &str) -> Result<NumberKey, String> {
        let bytes = text.as_bytes();
        let mut digits = [0u8; 10];
        match bytes.len() {
            11 if bytes[3] == b',' => {
                digits[..3].copy_from_slice(&bytes[..3]);
                digits[3..].copy_from_slice(&bytes[4..]);
            }
            _ if bytes.contains(&b',') => {
                return Err(format!("{}: expected NPA,NXXXXXX", quoted(text)));
            }
            10 => digits.copy_from_slice(bytes),
            _ => return Err(format!("{}: expected 10 digits", quoted(text))),
        }
        self.nanp(&digits)
    }

    /// Fast path for 10-digit NANP numbers: shape checked per number, the
    /// area code's region checked once (with the full numbering plan).
    fn nanp(&mut self, digits: &[u8]) -> Result<NumberKey, String> {
        let shown = || quoted(&String::from_utf8_lossy(digits)).to_string();
        if digits.len() != 10 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(format!("{}: expected 10 digits", shown()));
        }
        if digits[0] < b'2' || digits[3] < b'2' {
            return Err(format!(
                "{}: area code and exchange cannot start with 0 or 1",
                shown()
            ));
        }
        let value = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        let npa = (value / 10_000_000) as usize;
        if !self.npa_ok[npa] {
            let region = self.region;
            match number::normalize_any(&format!("+1{value}"), region) {
                Ok(n) if n.region == region => self.npa_ok[npa] = true,
                Ok(n) => {
                    return Err(format!(
                        "{}: area code {npa} is in {}, not {region}",
                        shown(),
                        n.region
                    ));
                }
                // An invalid exchange must not condemn its whole area code: only this line fails.
                Err(err) => return Err(format!("{}: {err}", shown())),
            }
        }
        // E.164 `1` + 10 digits: 11 digits.
        Ok(NumberKey((11u64 << 50) | (10_000_000_000 + value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(e164: &str) -> NumberKey {
        NumberKey::from_e164(e164).unwrap()
    }

    fn parse(format: Format, region: &str, line: &str) -> Result<LineItem, String> {
        LineParser::new(format, Region::parse(region).unwrap()).parse(line, 2)
    }

    #[test]
    fn test_formats_table() {
        let change_list = Format::Delimited(DelimitedTemplate {
            delimiter: b',',
            area: Some(1),
            number: Some(2),
            action: Some(3),
            add_values: vec!["A".into()],
            remove_values: vec!["D".into()],
            ..Default::default()
        });
        let phone_column = Format::Delimited(DelimitedTemplate {
            delimiter: b';',
            phone: Some(2),
            ..Default::default()
        });
        let fixed = Format::Fixed(FixedTemplate {
            area: Some((1, 3)),
            number: Some((4, 7)),
            ..Default::default()
        });
        let cases = [
            (
                Format::Ftc,
                "US",
                "212,5550199",
                Ok(LineItem::Add(key("+12125550199"))),
            ),
            (
                Format::Ftc,
                "US",
                "2125550199\r",
                Ok(LineItem::Add(key("+12125550199"))),
            ),
            (Format::Ftc, "US", "", Ok(LineItem::Skip)),
            (
                Format::Tps,
                "GB",
                "02079460018 \r",
                Ok(LineItem::Add(key("+442079460018"))),
            ),
            (Format::Tps, "GB", "020794600180", Err(String::new())),
            (
                Format::Tps,
                "GB",
                "01865123456 ",
                Ok(LineItem::Add(key("+441865123456"))),
            ),
            (Format::Tps, "GB", "020  7946001", Err(String::new())),
            (
                change_list.clone(),
                "US",
                "212,5550199,A",
                Ok(LineItem::Add(key("+12125550199"))),
            ),
            (
                change_list.clone(),
                "US",
                "212,5550199,D",
                Ok(LineItem::Remove(key("+12125550199"))),
            ),
            (
                phone_column,
                "IT",
                "x;+39 333 123 4567;y",
                Ok(LineItem::Add(key("+393331234567"))),
            ),
            (
                fixed,
                "US",
                "2125550199",
                Ok(LineItem::Add(key("+12125550199"))),
            ),
            (
                Format::Lines,
                "US",
                "(212) 555-0199",
                Ok(LineItem::Add(key("+12125550199"))),
            ),
            (Format::Lines, "IT", "# comment", Ok(LineItem::Skip)),
        ];
        for (format, region, line, expected) in cases {
            let got = parse(format.clone(), region, line);
            match expected {
                Ok(item) => assert_eq!(got, Ok(item), "{format:?} {line:?}"),
                Err(_) => assert!(
                    got.is_err(),
                    "{format:?} {line:?} should be refused: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn test_tps_variants() {
        // Variant 1: 5-character dialling code + 7-character remainder.
        assert_eq!(
            parse(Format::Tps, "GB", "02079460018 "),
            Ok(LineItem::Add(key("+442079460018")))
        );
        assert_eq!(
            parse(Format::Tps, "GB", "01865123456 "),
            Ok(LineItem::Add(key("+441865123456")))
        );
        assert_eq!(
            parse(Format::Tps, "GB", "0207 9460018"),
            Ok(LineItem::Add(key("+442079460018")))
        );
        // Variant 2: the whole national number padded to 12.
        assert_eq!(
            parse(Format::Tps, "GB", "07400123456 "),
            Ok(LineItem::Add(key("+447400123456")))
        );
        assert_eq!(
            parse(Format::Tps, "GB", "07400123456 20261120"),
            Ok(LineItem::Add(key("+447400123456")))
        );
    }

    #[test]
    fn test_malformed_lines_are_named() {
        let cases = [
            (Format::Ftc, "US", "212,555019", "NPA,NXXXXXX"),
            (Format::Ftc, "US", "0125550199", "cannot start with 0 or 1"),
            (Format::Ftc, "US", "4165550199", "not US"),
            (Format::Ftc, "US", "21a5550199", "10 digits"),
            (Format::Tps, "GB", "0207x460018 ", "unexpected 'x'"),
            (Format::Tps, "GB", "0207", "shorter"),
        ];
        for (format, region, line, expected) in cases {
            let err = parse(format.clone(), region, line).unwrap_err();
            assert!(err.contains(expected), "{format:?} {line:?}: {err}");
        }
    }

    /// A fixed field too narrow for its numbers cut them into other, valid
    /// numbers (`333123456` of `3331234567`): a digit right beside a number
    /// field refuses the line; area and number fields may touch.
    #[test]
    fn test_a_fixed_field_cutting_a_number_is_refused() {
        let phone = |start, len| {
            Format::Fixed(FixedTemplate {
                phone: Some((start, len)),
                ..Default::default()
            })
        };
        let err = parse(phone(1, 9), "IT", "3331234567").unwrap_err();
        assert!(err.contains("column 10") && err.contains("widen"), "{err}");
        assert!(!err.contains("3331234"), "masked: {err}");
        let err = parse(phone(2, 10), "IT", "73331234567 x").unwrap_err();
        assert!(err.contains("a digit in column 1 "), "{err}");
        assert_eq!(
            parse(phone(1, 10), "IT", "3331234567"),
            Ok(LineItem::Add(key("+393331234567")))
        );
        assert_eq!(
            parse(phone(2, 11), "IT", "X3331234567 Y"),
            Ok(LineItem::Add(key("+393331234567")))
        );
        let split = Format::Fixed(FixedTemplate {
            area: Some((1, 3)),
            number: Some((4, 7)),
            ..Default::default()
        });
        assert_eq!(
            parse(split.clone(), "US", "2125550199"),
            Ok(LineItem::Add(key("+12125550199")))
        );
        assert!(parse(split, "US", "21255501990").is_err());
    }

    /// `--skip-lines` skips headers; a skipped line holding a number is a
    /// file without its header, refused rather than dropped.
    #[test]
    fn test_a_skipped_line_holding_a_number_is_refused() {
        let template = Format::Delimited(DelimitedTemplate {
            delimiter: b',',
            phone: Some(1),
            skip_lines: 1,
            ..Default::default()
        });
        let mut parser = LineParser::new(template, Region::parse("US").unwrap());
        assert_eq!(parser.parse("phone,name", 1), Ok(LineItem::Skip));
        let err = parser.parse("2125550199,x", 1).unwrap_err();
        assert!(err.contains("--skip-lines 1"), "{err}");
        assert_eq!(
            parser.parse("2125550199,x", 2),
            Ok(LineItem::Add(key("+12125550199")))
        );
    }

    /// Errors quote lines with all digits but the last two masked, full-
    /// width ones too.
    #[test]
    fn test_quoted_lines_mask_every_kind_of_digit() {
        let shown = quoted("３３３１２３４５６７").to_string();
        assert!(shown.contains("********６７"), "{shown}");
        assert_eq!(quoted("212-555-0199").to_string(), "\"***-***-**99\"");
    }

    #[test]
    fn test_detect() {
        let us = Region::parse("US").unwrap();
        let gb = Region::parse("GB").unwrap();
        assert_eq!(Format::detect("212,5550199", us), Format::Ftc);
        assert_eq!(Format::detect("2125550199", us), Format::Ftc);
        assert_eq!(Format::detect("+1 212 555 0199", us), Format::Lines);
        assert_eq!(Format::detect("02079460018 ", gb), Format::Tps);
        assert_eq!(Format::detect("+44 20 7946 0018", gb), Format::Lines);
        assert_eq!(
            Format::detect("0€€€€€€€€€€€€", gb),
            Format::Lines,
            "no panic on multi-byte text"
        );
    }
}
