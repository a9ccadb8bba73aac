//! Phone-number normalisation: any common notation to canonical E.164, with
//! libphonenumber's metadata (the `phonenumber` crate). Lookups everywhere use
//! the canonical form only, through [`NumberKey`].

use std::fmt;
use std::str::FromStr;

mod plan;

use phonenumber::Type;
use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;

/// An ISO 3166 region known to the numbering plan (`IT`, `US`, `GB`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(Id);

impl Region {
    /// Parses an upper- or lower-case region code; `UK` is accepted for `GB`.
    pub fn parse(code: &str) -> Option<Region> {
        let upper = code.trim().to_ascii_uppercase();
        let upper = if upper == "UK" {
            "GB".to_string()
        } else {
            upper
        };
        let id = Id::from_str(&upper).ok()?;
        DATABASE.by_id(id.as_ref())?;
        Some(Region(id))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The country calling code of the region (`39` for IT).
    pub fn calling_code(&self) -> u16 {
        DATABASE
            .by_id(self.0.as_ref())
            .map(|meta| meta.country_code())
            .unwrap_or(0)
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A number in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// `+` and up to 15 digits.
    pub e164: String,
    /// The region the number belongs to.
    pub region: Region,
    /// The key registries and contact records are indexed by.
    pub key: NumberKey,
}

/// Why a number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("empty number")]
    Empty,
    #[error("unexpected character {0:?}")]
    BadCharacter(char),
    #[error("cannot be parsed as a phone number")]
    Unparseable,
    #[error("not a valid number in the numbering plan")]
    Invalid,
    #[error("a {0} number is not callable for telemarketing")]
    NotCallable(&'static str),
}

/// Exact 64-bit key of an E.164 number: the digit count in the top bits and
/// the digits' value below, so `+3902...` and `+39002...` never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NumberKey(pub u64);

impl NumberKey {
    const VALUE_BITS: u32 = 50;

    /// Builds the key of E.164 digits (without `+`); `None` if not 1-15 digits.
    pub fn from_digits(digits: &str) -> Option<NumberKey> {
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = digits.parse().ok()?;
        Some(NumberKey(
            ((digits.len() as u64) << Self::VALUE_BITS) | value,
        ))
    }

    /// Builds the key of an E.164 string (`+` followed by digits).
    pub fn from_e164(e164: &str) -> Option<NumberKey> {
        Self::from_digits(e164.strip_prefix('+')?)
    }

    /// The E.164 string of the key.
    pub fn to_e164(self) -> String {
        let len = (self.0 >> Self::VALUE_BITS) as usize;
        let value = self.0 & ((1u64 << Self::VALUE_BITS) - 1);
        format!("+{value:0len$}")
    }
}

/// A concurrent map by number. The hasher is seeded at random per process:
/// fast on the decision path, and still not predictable from outside.
pub type ByNumber<V> = dashmap::DashMap<NumberKey, V, foldhash::fast::RandomState>;

/// Normalises a number written in any common notation; `default_region`
/// applies to numbers written without a country code.
///
/// Accepted: `+39 333 123 4567`, `0039 333 1234567`, `(+39) 333-1234567`,
/// national `02 8765 4321` (Italian landlines keep their 0), `011 ...` from
/// NANP regions. A bare `39...` is never taken as a country code: national
/// numbers only lose the region's trunk prefix (`0` in GB/FR/DE, `1` in the
/// US). Toll-free, premium-rate, shared-cost, voicemail and carrier-service
/// numbers are refused: they are not consumer lines.
///
/// # Errors
/// [`NumberError`] says why the number cannot be used.
pub fn normalize(input: &str, default_region: Region) -> Result<Normalized, NumberError> {
    normalize_checked(input, Some(default_region), true)
}

/// Like [`normalize`], but accepts every valid number type: for registry files
/// and contact records, which may list numbers no campaign will call.
///
/// # Errors
/// [`NumberError`] says why the number cannot be parsed.
pub fn normalize_any(input: &str, default_region: Region) -> Result<Normalized, NumberError> {
    normalize_checked(input, Some(default_region), false)
}

/// Normalises a number that must carry its country code (`+...` or `00...`):
/// for requests with no region to fall back on.
///
/// # Errors
/// [`NumberError`] says why the number cannot be used.
pub fn normalize_international(input: &str) -> Result<Normalized, NumberError> {
    normalize_checked(input, None, true)
}

fn normalize_checked(
    input: &str,
    default_region: Option<Region>,
    callable_only: bool,
) -> Result<Normalized, NumberError> {
    let e164 = international_e164(input, default_region)?;
    let digits = &e164[1..];
    if digits.len() > 15 {
        return Err(NumberError::Unparseable);
    }
    let (code, national) = plan::split_country_code(digits).ok_or(NumberError::Unparseable)?;
    if national.is_empty() {
        return Err(NumberError::Unparseable);
    }
    let (region, kind) = plan::classify(code, national).ok_or(NumberError::Invalid)?;
    if callable_only && let Some(name) = non_callable_type(kind) {
        return Err(NumberError::NotCallable(name));
    }
    let key = NumberKey::from_digits(digits).ok_or(NumberError::Invalid)?;
    Ok(Normalized { e164, region, key })
}

/// The E.164 form (`+` and digits, not yet validated) of a number in any
/// accepted notation.
fn international_e164(input: &str, default_region: Option<Region>) -> Result<String, NumberError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(NumberError::Empty);
    }
    let mut digits = String::with_capacity(trimmed.len() + 4);
    digits.push('+');
    let mut plus = false;
    for c in trimmed.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '/' | '\u{a0}' => {}
            // A `+` only as the first significant character, possibly inside "(+39)".
            '+' if digits.len() == 1 && !plus => plus = true,
            '(' | ')' => {}
            other => return Err(NumberError::BadCharacter(other)),
        }
    }
    if !(3..=17).contains(&(digits.len() - 1)) {
        return Err(NumberError::Unparseable);
    }
    if plus {
        return Ok(digits);
    }
    if digits.starts_with("+00") {
        digits.replace_range(1..3, "");
        return Ok(digits);
    }
    let Some(region) = default_region else {
        return Err(NumberError::Unparseable);
    };
    let code = region.calling_code();
    if code == 1 && digits.starts_with("+011") {
        digits.replace_range(1..4, "");
        return Ok(digits);
    }
    let national = match plan::metadata(region.as_str()).and_then(|m| m.national_prefix()) {
        Some(trunk) if !trunk.is_empty() => digits[1..].strip_prefix(trunk).unwrap_or(&digits[1..]),
        _ => &digits[1..],
    };
    Ok(format!("+{code}{national}"))
}

/// The regions other than its own that `number` may belong to (see
/// [`plan::also_recognised_by`]); none for almost every number.
pub fn other_possible_regions(number: &Normalized) -> smallvec::SmallVec<[Region; 2]> {
    plan::split_country_code(&number.e164[1..])
        .map(|(code, national)| plan::also_recognised_by(code, national, number.region))
        .unwrap_or_default()
}

/// The region and numbering-plan type of an E.164 number (`+` and digits), if valid.
pub fn classify_e164(e164: &str) -> Option<(Region, Type)> {
    let digits = e164.strip_prefix('+')?;
    let (code, national) = plan::split_country_code(digits)?;
    plan::classify(code, national)
}

/// Whether E.164 `digits` (no `+`) are a valid fixed-line number: not a
/// mobile, nor a number that may be either (nor invalid).
pub fn is_fixed_line(digits: &str) -> bool {
    plan::split_country_code(digits)
        .and_then(|(code, national)| plan::classify(code, national))
        .is_some_and(|(_, kind)| kind == Type::FixedLine)
}

/// The numbering-plan type of an E.164 number (`+` and digits), if valid.
pub fn number_type(e164: &str) -> Option<Type> {
    classify_e164(e164).map(|(_, kind)| kind)
}

fn non_callable_type(kind: Type) -> Option<&'static str> {
    match kind {
        Type::TollFree => Some("toll-free"),
        Type::PremiumRate => Some("premium-rate"),
        Type::SharedCost => Some("shared-cost"),
        Type::Voicemail => Some("voicemail-access"),
        _ => None,
    }
}

/// Masks a number for service output (`+39********67`): personal data
/// stays in the store and the audit log, never in tracing or on pages. Of
/// an international number the `+` and its country code are shown, of any
/// other input (national forms, bad input) nothing but the last two digits;
/// at least six characters are always hidden (the last two are too when
/// fewer would be: `+683****` for Niue's four digits; found by review:
/// the first two digits and the last two left 100 candidates there, and
/// `+12...` showed an area code's first digit). Separators are left out.
pub fn mask(number: &str) -> String {
    const HIDDEN: usize = 6;
    let shown: Vec<char> = number.chars().filter(|c| c.is_alphanumeric()).collect();
    if shown.len() <= HIDDEN {
        return "*".repeat(shown.len().max(1));
    }
    let international = number.trim_start().starts_with('+');
    let digits: String = shown.iter().collect();
    let head = if international {
        plan::split_country_code(&digits).map_or(0, |(_, national)| digits.len() - national.len())
    } else {
        0
    };
    let tail = if shown.len() - head >= HIDDEN + 2 {
        shown.len() - 2
    } else {
        shown.len()
    };
    let mut out = String::with_capacity(shown.len() + 1);
    if international {
        out.push('+');
    }
    out.extend(&shown[..head]);
    out.extend(std::iter::repeat_n('*', tail - head));
    out.extend(&shown[tail..]);
    out
}

/// Free text that may hold a number (a request id a CRM built from it),
/// for a log line: every digit but the last two masked, control
/// characters shown as `?` (a line break would forge a log line), at most
/// 64 characters shown.
pub fn mask_digits(text: &str) -> String {
    let digits = text.chars().filter(|c| c.is_numeric()).count();
    let mut seen = 0;
    let mut out: String = text
        .chars()
        .take(64)
        .map(|c| {
            // Line and paragraph separators and bidirectional overrides
            // reorder or break a log line as controls do.
            if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            {
                return '?';
            }
            if !c.is_numeric() {
                return c;
            }
            seen += 1;
            if seen + 2 > digits { c } else { '*' }
        })
        .collect();
    if text.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers whose numbering plan does not tell their region apart name
    /// the others they may belong to; every other number names none.
    #[test]
    fn test_numbers_of_overlapping_plans_name_every_region_they_may_be_in() {
        let others = |n: &str| {
            let number = normalize_any(n, Region::parse("IT").unwrap()).unwrap();
            let mut all: Vec<String> = other_possible_regions(&number)
                .iter()
                .map(|r| r.as_str().to_string())
                .collect();
            all.push(format!("={}", number.region.as_str()));
            all.sort();
            all
        };
        // A +590 mobile: Guadeloupe, Saint-Barthélemy or Saint-Martin.
        assert_eq!(others("+590 690 12 34 56"), ["=GP", "BL", "MF"]);
        for single in [
            "+39 02 1234 5678",
            "+39 333 123 4567",
            "+1 212 555 0142",
            "+1 787 555 0142",
            "+44 20 7946 0018",
            "+44 7624 123456",
            "+7 701 123 4567",
            "+262 692 12 34 56",
            "+49 30 1234567",
        ] {
            assert_eq!(others(single).len(), 1, "{single}: {:?}", others(single));
        }
    }

    #[test]
    fn test_mask_digits_leaves_two_and_bounds_the_text() {
        assert_eq!(mask_digits("crm-+393331234567-x"), "crm-+**********67-x");
        assert_eq!(mask_digits("abc"), "abc");
        assert_eq!(mask_digits("a\nb\r\u{2028}\u{202e}"), "a?b???");
        assert_eq!(mask_digits("３３３１２"), "***１２");
        let long = "x".repeat(100);
        assert_eq!(mask_digits(&long).chars().count(), 65);
    }

    fn region(code: &str) -> Region {
        Region::parse(code).unwrap()
    }

    #[test]
    fn test_common_notations_normalise_to_e164() {
        let cases = [
            ("+39 333 123 4567", "IT", "+393331234567"),
            ("0039 333 1234567", "IT", "+393331234567"),
            ("(+39) 333-1234567", "IT", "+393331234567"),
            ("333.123.4567", "IT", "+393331234567"),
            ("3931234567", "IT", "+393931234567"),
            ("02 8765 4321", "IT", "+390287654321"),
            ("+39 02 8765 4321", "US", "+390287654321"),
            ("(212) 555-0123", "US", "+12125550123"),
            ("+1 212 555 0123", "IT", "+12125550123"),
            ("020 7946 0018", "GB", "+442079460018"),
            ("07400 123456", "GB", "+447400123456"),
            ("06 12 34 56 78", "FR", "+33612345678"),
        ];
        for (input, default_region, expected) in cases {
            let normalized = normalize(input, region(default_region))
                .unwrap_or_else(|err| panic!("{input} ({default_region}): {err}"));
            assert_eq!(normalized.e164, expected, "{input} ({default_region})");
            assert_eq!(NumberKey::from_e164(expected), Some(normalized.key));
        }
    }

    #[test]
    fn test_region_of_number_comes_from_the_number() {
        assert_eq!(
            normalize("+12125550123", region("IT")).unwrap().region,
            region("US")
        );
        assert_eq!(
            normalize("+14165550123", region("US")).unwrap().region,
            region("CA")
        );
        assert_eq!(
            normalize("3331234567", region("IT")).unwrap().region,
            region("IT")
        );
    }

    #[test]
    fn test_invalid_numbers_are_refused() {
        let cases = [
            ("", NumberError::Empty),
            ("   ", NumberError::Empty),
            ("+39 333 abc", NumberError::BadCharacter('a')),
            ("12", NumberError::Unparseable),
            ("+39 1", NumberError::Invalid),
            ("+1 212 555 01234567890", NumberError::Unparseable),
            ("+39 333", NumberError::Invalid),
            ("999", NumberError::Invalid),
            ("+1 800 555 0123", NumberError::NotCallable("toll-free")),
            ("+39 899 123456", NumberError::NotCallable("premium-rate")),
            ("+44 800 123 4567", NumberError::NotCallable("toll-free")),
            // A zero after the `+` or the international prefix: no country
            // code begins with one (found by review: `+049 30 ...` was
            // Germany under a second key, `+0493012345678`).
            ("+049 30 12345678", NumberError::Unparseable),
            ("+0049 30 12345678", NumberError::Unparseable),
            ("00049 30 12345678", NumberError::Unparseable),
            ("+039 333 123 4567", NumberError::Unparseable),
            ("+01 212 555 0123", NumberError::Unparseable),
        ];
        for (input, expected) in cases {
            let result = normalize(input, region("IT"));
            assert_eq!(
                result.as_ref().err(),
                Some(&expected),
                "{input}: {result:?}"
            );
        }
    }

    #[test]
    fn test_keys_of_different_lengths_never_collide() {
        let a = NumberKey::from_digits("3902").unwrap();
        let b = NumberKey::from_digits("39002").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_e164(), "+3902");
        assert_eq!(b.to_e164(), "+39002");
        assert_eq!(NumberKey::from_digits("1234567890123456"), None);
        assert_eq!(NumberKey::from_digits(""), None);
    }

    #[test]
    fn test_mask_hides_the_middle() {
        assert_eq!(mask("+393331234567"), "+39********67");
        assert_eq!(mask("+12125550123"), "+1********23");
        // Short national parts: at least six digits hidden.
        assert_eq!(mask("+6834002"), "+683****");
        assert_eq!(mask("+50012345"), "+500*****");
        assert_eq!(mask("+3531234567"), "+353*******");
        assert_eq!(mask("+35312345"), "+353*****");
        // No country code known: nothing shown but the last two.
        assert_eq!(mask("+0001234567"), "+********67");
        assert_eq!(mask("12345"), "*****");
        // National and spaced forms show two digits (eight of ten were
        // shown before: found by review).
        assert_eq!(mask("333 123 4567"), "********67");
        assert_eq!(mask("3331234567"), "********67");
        assert_eq!(mask("1234567"), "*******");
        assert_eq!(mask(""), "*");
        for input in [
            "+39 333 123 4567",
            "0039 333 1234567",
            "(333) 123-4567",
            "abc123456789x",
        ] {
            let digits_shown = mask(input).chars().filter(char::is_ascii_digit).count();
            assert!(digits_shown <= 4, "{input}: {}", mask(input));
        }
    }

    #[test]
    fn test_region_parse() {
        assert_eq!(region("uk"), region("GB"));
        assert!(Region::parse("ZZ").is_none());
        assert_eq!(region("IT").calling_code(), 39);
    }
}
