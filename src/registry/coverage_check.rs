//! Whether a block-list file can be what its `--covers` says. A
//! block-list reads every number under a covered prefix that it does not
//! hold as clear: a list of one area code imported with `--covers +1`, or
//! a US list with `--covers +1,+44`, would clear every other US area code
//! or every UK number. Two signs of that are refused:
//!
//! - a covered prefix under which the file holds no number;
//! - a covered prefix under which every number of the file begins with a
//!   longer common prefix (a national list spans the country's area codes
//!   and mobile ranges; a list whose numbers all share one area code is
//!   that area code's list).
//!
//! - a prefix that is a whole country (its calling code) under which the
//!   file's numbers begin with fewer than [`NATIONAL_GROUPS`] different
//!   three-digit groups (a national list spans hundreds of area codes and
//!   mobile ranges; two area codes' lists, or one with a stray number
//!   elsewhere, do not).
//!
//! All are cheap on a list of any size: keys of one digit count are in
//! digit order, so each count and each common prefix is read from the
//! first and last number of at most 15 ranges per prefix (15,000 for the
//! groups).

use roaring::RoaringTreemap;

use crate::number::NumberKey;

/// Digits of a common prefix shown in an error beyond the covered prefix
/// (an area code), and hidden at the end of the shortest number.
const SHOWN_DIGITS: usize = 4;

/// Three-digit groups after the calling code a whole country's list must
/// reach (NANP has over 300 area codes in use; a national list of any
/// country spans far more groups than this).
pub const NATIONAL_GROUPS: usize = 25;

/// Why a file cannot be what `--covers` says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarrowFile {
    #[error(
        "--covers +{prefix}: the file holds no number under +{prefix}, so every number under it would read clear; leave it out of --covers (or pass --allow-narrow-file if the list really holds none there)"
    )]
    Empty { prefix: String },
    #[error(
        "--covers +{prefix}: all {count} numbers of the file under +{prefix} begin +{common}, so every other number under +{prefix} would read clear; state the prefixes the data covers (--covers +{common_exact}...) or pass --allow-narrow-file if the list really covers all of +{prefix}"
    )]
    Narrow {
        prefix: String,
        count: u64,
        /// The common prefix as shown (cut after a few digits).
        common: String,
        /// The common prefix, cut the same way without the ellipsis.
        common_exact: String,
    },
    #[error(
        "--covers +{prefix} (the whole country): the file's numbers under it begin with only {groups} different three-digit groups after +{prefix} (a national list spans at least {NATIONAL_GROUPS}), so the rest of the country would read clear; state the prefixes the data covers, or pass --allow-narrow-file if the list really covers all of +{prefix}"
    )]
    Sparse { prefix: String, groups: usize },
}

/// Checks each covered prefix (E.164 digits, no `+`) against `numbers`;
/// `calling_code` is the registry's country's (a prefix equal to it
/// covers the whole country).
///
/// # Errors
/// The first prefix the file cannot cover, as [`NarrowFile`].
pub fn check(
    numbers: &RoaringTreemap,
    coverage: &[String],
    calling_code: &str,
) -> Result<(), NarrowFile> {
    for prefix in coverage {
        let Ok(value) = prefix.parse::<u64>() else {
            continue; // parse_coverage admits digits only
        };
        let mut count = 0;
        let mut common: Option<String> = None;
        let mut shortest = usize::MAX;
        for len in prefix.len().max(1)..=15 {
            let Some(span) = 10u64.checked_pow((len - prefix.len()) as u32) else {
                continue;
            };
            let (Some(low), Some(high)) = (
                value.checked_mul(span),
                value
                    .checked_add(1)
                    .and_then(|v| v.checked_mul(span))
                    .map(|v| v - 1),
            ) else {
                continue;
            };
            let key = |v: u64| ((len as u64) << 50) | v;
            let before = match key(low).checked_sub(1) {
                Some(below) => numbers.rank(below),
                None => 0,
            };
            let through = numbers.rank(key(high));
            if through <= before {
                continue;
            }
            count += through - before;
            shortest = shortest.min(len);
            for at in [before, through - 1] {
                if let Some(found) = numbers.select(at) {
                    let digits = NumberKey(found).to_e164();
                    let digits = digits.trim_start_matches('+');
                    common = Some(match common {
                        None => digits.to_string(),
                        Some(c) => common_prefix(&c, digits).to_string(),
                    });
                }
            }
        }
        let Some(common) = common else {
            return Err(NarrowFile::Empty {
                prefix: prefix.clone(),
            });
        };
        if common.len() > prefix.len() {
            // Never the last digits of a number (a single number's common
            // prefix is the whole number): at most all but the last four.
            let shown_len = common
                .len()
                .min(prefix.len() + SHOWN_DIGITS)
                .min(shortest.saturating_sub(SHOWN_DIGITS))
                .max(prefix.len());
            let exact = common[..shown_len].to_string();
            let shown = if shown_len < common.len() {
                format!("{exact}…")
            } else {
                exact.clone()
            };
            return Err(NarrowFile::Narrow {
                prefix: prefix.clone(),
                count,
                common: shown,
                common_exact: exact,
            });
        }
        if prefix == calling_code {
            let groups = groups_under(numbers, prefix);
            if groups < NATIONAL_GROUPS {
                return Err(NarrowFile::Sparse {
                    prefix: prefix.clone(),
                    groups,
                });
            }
        }
    }
    Ok(())
}

/// How many of the thousand three-digit groups after `prefix` begin at
/// least one of `numbers` (of any length).
fn groups_under(numbers: &RoaringTreemap, prefix: &str) -> usize {
    let Ok(value) = prefix.parse::<u64>() else {
        return 0;
    };
    (0..1000u64)
        .filter(|group| {
            let Some(head) = value.checked_mul(1000).and_then(|v| v.checked_add(*group)) else {
                return false;
            };
            any_under(numbers, head, prefix.len() + 3)
        })
        .count()
}

/// Whether any of `numbers` begins with the `digits`-digit prefix `head`
/// (a seek per digit count: `rank` sums every container before the value,
/// too slow a thousand times over a national list).
fn any_under(numbers: &RoaringTreemap, head: u64, digits: usize) -> bool {
    (digits.max(1)..=15).any(|len| {
        let Some(span) = 10u64.checked_pow((len - digits) as u32) else {
            return false;
        };
        let (Some(low), Some(high)) = (
            head.checked_mul(span),
            head.checked_add(1)
                .and_then(|v| v.checked_mul(span))
                .map(|v| v - 1),
        ) else {
            return false;
        };
        let key = |v: u64| ((len as u64) << 50) | v;
        let mut from = numbers.iter();
        from.advance_to(key(low));
        from.next().is_some_and(|found| found <= key(high))
    })
}

fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let same = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    &a[..same]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(numbers: &[&str]) -> RoaringTreemap {
        numbers
            .iter()
            .map(|n| NumberKey::from_e164(n).unwrap().0)
            .collect()
    }

    fn covers(prefixes: &[&str]) -> Vec<String> {
        prefixes.iter().map(|p| (*p).to_string()).collect()
    }

    #[test]
    fn test_a_list_spanning_its_prefix_passes() {
        let us = list(&[
            "+12125550199",
            "+12129990100",
            "+16465550100",
            "+16462220100",
            "+13105550111",
        ]);
        assert_eq!(check(&us, &covers(&["1"]), ""), Ok(()));
        assert_eq!(check(&us, &covers(&["1212", "1646"]), ""), Ok(()));
        // Numbers of different lengths under one prefix (Italy).
        let it = list(&["+390212345678", "+39333123456", "+393471234567"]);
        assert_eq!(check(&it, &covers(&["39"]), ""), Ok(()));
    }

    #[test]
    fn test_one_area_code_under_a_national_prefix_is_refused() {
        let one = list(&["+12125550199", "+12125550100", "+12129990000"]);
        let err = check(&one, &covers(&["1"]), "").unwrap_err();
        assert_eq!(
            err,
            NarrowFile::Narrow {
                prefix: "1".into(),
                count: 3,
                common: "1212".into(),
                common_exact: "1212".into(),
            }
        );
        assert!(err.to_string().contains("begin +1212"), "{err}");
        // A single number is shown cut, never whole.
        let single = list(&["+393331234567"]);
        let err = check(&single, &covers(&["39"]), "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("begin +393331…") && !err.contains("1234567"),
            "{err}"
        );
        // A long covered prefix shows no more of a number than its start.
        let err = check(&list(&["+12125550199"]), &covers(&["1212555"]), "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("begin +1212555…") && !err.contains("5550199"),
            "{err}"
        );
        // Numbers of two lengths that share a longer prefix.
        let mixed = list(&["+39333123456", "+393331234567"]);
        assert!(matches!(
            check(&mixed, &covers(&["39"]), ""),
            Err(NarrowFile::Narrow { .. })
        ));
    }

    /// A whole country's coverage needs numbers under many area codes:
    /// two area codes' lists with a stray number elsewhere spread as wide
    /// as the country's code, and were taken for a national list.
    #[test]
    fn test_a_whole_country_needs_a_national_spread() {
        let few = list(&[
            "+12125550199",
            "+12129990100",
            "+16465550100",
            "+16462220100",
            "+13105550111",
            "+13102220111",
        ]);
        assert_eq!(
            check(&few, &covers(&["1"]), "1"),
            Err(NarrowFile::Sparse {
                prefix: "1".into(),
                groups: 3
            })
        );
        let national: Vec<String> = (200..1000)
            .step_by(25)
            .map(|npa| format!("+1{npa}5550199"))
            .collect();
        let national: Vec<&str> = national.iter().map(String::as_str).collect();
        assert_eq!(check(&list(&national), &covers(&["1"]), "1"), Ok(()));
        // Subscribed area codes are not held to it.
        assert_eq!(check(&few, &covers(&["1212", "1646", "1310"]), "1"), Ok(()));
        // Groups count numbers of any length (Italy).
        let it: Vec<String> = (0..30)
            .map(|i| format!("+393{:02}1234567", 20 + i))
            .chain((0..30).map(|i| format!("+390{:02}123456", 10 + i)))
            .collect();
        let it: Vec<&str> = it.iter().map(String::as_str).collect();
        assert_eq!(check(&list(&it), &covers(&["39"]), "39"), Ok(()));
    }

    #[test]
    fn test_a_prefix_without_numbers_is_refused() {
        let us = list(&["+12125550199", "+16465550100"]);
        assert_eq!(
            check(&us, &covers(&["1", "44"]), ""),
            Err(NarrowFile::Empty {
                prefix: "44".into()
            })
        );
        // A longer prefix sharing digits with the numbers is not fooled by
        // numbers of another length (+1212 is 4 digits; +121 2555 0199 is
        // under it, +1213... is not).
        let near = list(&["+12135550199"]);
        assert!(matches!(
            check(&near, &covers(&["1212"]), ""),
            Err(NarrowFile::Empty { .. })
        ));
        // The largest prefix and numbers (15 digits) do not overflow.
        let long = list(&["+999999999999999"]);
        assert!(check(&long, &covers(&["999999999999999"]), "").is_ok());
        assert!(matches!(
            check(&long, &covers(&["99"]), ""),
            Err(NarrowFile::Narrow { .. })
        ));
    }
}
