//! Public holidays per country and year, including the movable feasts
//! (Easter by the Gregorian computus). Regional or extra days come from the
//! configuration.

use jiff::ToSpan;
use jiff::civil::{Date, Weekday, date};

/// Easter Sunday of a Gregorian year (Meeus/Jones/Butcher).
pub fn easter_sunday(year: i16) -> Date {
    let y = i32::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    date(year, month as i8, day as i8)
}

fn plus(d: Date, days: i64) -> Date {
    d.checked_add(days.days())
        .expect("holiday within the calendar")
}

/// The `n`th (1-based) `weekday` of a month, or the last when `n` is 0.
fn nth_weekday(year: i16, month: i8, weekday: Weekday, n: i8) -> Date {
    let nth = if n == 0 { -1 } else { n };
    date(year, month, 1)
        .nth_weekday_of_month(nth, weekday)
        .expect("nth weekday exists")
}

/// Moves weekend holidays to the next free weekday (UK substitute days).
fn substitute(days: &mut Vec<Date>) {
    days.sort();
    let mut placed: Vec<Date> = Vec::new();
    for &day in days.iter() {
        let mut d = day;
        while matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) || placed.contains(&d) {
            d = plus(d, 1);
        }
        placed.push(d);
    }
    *days = placed;
}

/// Moves a Saturday holiday to Friday and a Sunday holiday to Monday (US observed days).
fn observed(d: Date) -> Date {
    match d.weekday() {
        Weekday::Saturday => plus(d, -1),
        Weekday::Sunday => plus(d, 1),
        _ => d,
    }
}

/// National public holidays of `country` in `year`; empty for countries
/// without a built-in calendar (add days with `extra_holidays`).
pub fn national(country: &str, year: i16) -> Vec<Date> {
    let easter = easter_sunday(year);
    let d = |m: i8, day: i8| date(year, m, day);
    match country {
        "IT" | "SM" | "VA" => vec![
            d(1, 1),
            d(1, 6),
            easter,
            plus(easter, 1),
            d(4, 25),
            d(5, 1),
            d(6, 2),
            d(8, 15),
            d(11, 1),
            d(12, 8),
            d(12, 25),
            d(12, 26),
        ],
        "FR" => vec![
            d(1, 1),
            plus(easter, 1),
            d(5, 1),
            d(5, 8),
            plus(easter, 39),
            plus(easter, 50),
            d(7, 14),
            d(8, 15),
            d(11, 1),
            d(11, 11),
            d(12, 25),
        ],
        "ES" => vec![
            d(1, 1),
            d(1, 6),
            plus(easter, -2),
            d(5, 1),
            d(8, 15),
            d(10, 12),
            d(11, 1),
            d(12, 6),
            d(12, 8),
            d(12, 25),
        ],
        "DE" => vec![
            d(1, 1),
            plus(easter, -2),
            plus(easter, 1),
            d(5, 1),
            plus(easter, 39),
            plus(easter, 50),
            d(10, 3),
            d(12, 25),
            d(12, 26),
        ],
        "GB" => {
            // England and Wales bank holidays.
            let mut fixed = vec![d(1, 1), d(12, 25), d(12, 26)];
            substitute(&mut fixed);
            fixed.extend([
                plus(easter, -2),
                plus(easter, 1),
                nth_weekday(year, 5, Weekday::Monday, 1),
                nth_weekday(year, 5, Weekday::Monday, 0),
                nth_weekday(year, 8, Weekday::Monday, 0),
            ]);
            fixed
        }
        "US" => vec![
            observed(d(1, 1)),
            nth_weekday(year, 1, Weekday::Monday, 3),
            nth_weekday(year, 2, Weekday::Monday, 3),
            nth_weekday(year, 5, Weekday::Monday, 0),
            observed(d(6, 19)),
            observed(d(7, 4)),
            nth_weekday(year, 9, Weekday::Monday, 1),
            nth_weekday(year, 10, Weekday::Monday, 2),
            observed(d(11, 11)),
            nth_weekday(year, 11, Weekday::Thursday, 4),
            observed(d(12, 25)),
        ],
        _ => Vec::new(),
    }
}

/// Whether `day` is a public holiday of `country` (or one of `extra`).
/// Calendars are computed once per country and year and cached per thread.
pub fn is_holiday(country: &str, day: Date, extra: &[Date]) -> bool {
    thread_local! {
        static CALENDARS: std::cell::RefCell<std::collections::HashMap<(String, i16), Vec<Date>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    if extra.contains(&day) {
        return true;
    }
    CALENDARS.with(|calendars| {
        let mut calendars = calendars.borrow_mut();
        if let Some(days) = calendars
            .iter()
            .find(|((c, y), _)| c == country && *y == day.year())
            .map(|(_, d)| d)
        {
            return days.contains(&day);
        }
        let days = national(country, day.year());
        let holiday = days.contains(&day);
        calendars.insert((country.to_string(), day.year()), days);
        holiday
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_easter_sundays() {
        for (year, expected) in [
            (2024, date(2024, 3, 31)),
            (2025, date(2025, 4, 20)),
            (2026, date(2026, 4, 5)),
            (2027, date(2027, 3, 28)),
            (2038, date(2038, 4, 25)),
            (2285, date(2285, 3, 22)),
        ] {
            assert_eq!(easter_sunday(year), expected, "{year}");
        }
    }

    #[test]
    fn test_holiday_table() {
        let cases = [
            ("IT", date(2026, 4, 6), true),   // Easter Monday
            ("IT", date(2025, 4, 21), true),  // Easter Monday
            ("IT", date(2027, 3, 29), true),  // Easter Monday
            ("IT", date(2026, 12, 8), true),  // Immacolata
            ("IT", date(2026, 12, 7), false), // the day before
            ("IT", date(2026, 6, 2), true),
            ("FR", date(2026, 5, 14), true), // Ascension
            ("FR", date(2026, 5, 25), true), // Whit Monday
            ("FR", date(2026, 7, 14), true),
            ("ES", date(2026, 4, 3), true),   // Good Friday
            ("ES", date(2026, 4, 6), false),  // Easter Monday is regional in Spain
            ("GB", date(2026, 5, 25), true),  // spring bank holiday
            ("GB", date(2026, 8, 31), true),  // summer bank holiday
            ("GB", date(2026, 12, 28), true), // Boxing Day substitute (26th is a Saturday)
            ("GB", date(2027, 12, 27), true), // Christmas on Saturday -> Monday 27th
            ("GB", date(2027, 12, 28), true), // Boxing Day on Sunday -> Tuesday 28th
            ("US", date(2026, 11, 26), true), // Thanksgiving
            ("US", date(2026, 7, 3), true),   // Independence Day observed (4th is a Saturday)
            ("US", date(2026, 1, 19), true),  // MLK day
            ("US", date(2026, 5, 25), true),  // Memorial Day
            ("DE", date(2026, 10, 3), true),
            ("PL", date(2026, 1, 1), false), // no built-in calendar
        ];
        for (country, day, expected) in cases {
            assert_eq!(is_holiday(country, day, &[]), expected, "{country} {day}");
        }
        assert!(
            is_holiday("IT", date(2026, 6, 29), &[date(2026, 6, 29)]),
            "extra days count"
        );
    }
}
