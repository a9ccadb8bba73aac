//! Public holidays as data: each with the rule that places it in a year
//! (a fixed day, an offset from Easter, the n-th weekday of a month), how a
//! weekend holiday moves, and the years it exists. Regional or extra days
//! come from the configuration (`[destination.XX] extra_holidays`).

use jiff::ToSpan;
use jiff::civil::{Date, Weekday, date};

/// Where a holiday falls in a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolidayDate {
    /// Month and day.
    Fixed(i8, i8),
    /// Days after Western (Gregorian) Easter Sunday (negative: before).
    Easter(i16),
    /// Days after Orthodox Easter Sunday (Julian computus), as a Gregorian date.
    OrthodoxEaster(i16),
    /// The `n`th `weekday` of `month` (1-based; 0 = the last).
    NthWeekday(i8, Weekday, i8),
}

/// How a holiday that falls on a weekend is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeekendShift {
    /// It stays where it falls.
    Stays,
    /// Saturday to Friday, Sunday to Monday (US federal).
    NearestWeekday,
    /// To the next weekday not already a holiday (UK substitute days).
    NextFreeWeekday,
    /// Sunday to Monday, Saturday stays (Spain: the communities that move
    /// a national holiday falling on a Sunday move it to the Monday).
    SundayToMonday,
}

/// One public holiday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holiday {
    pub name: &'static str,
    pub date: HolidayDate,
    pub shift: WeekendShift,
    /// First year it exists; `None`: always.
    pub from_year: Option<i16>,
    /// First year it no longer exists; `None`: until further notice.
    pub until_year: Option<i16>,
}

impl Holiday {
    pub const fn fixed(name: &'static str, month: i8, day: i8) -> Holiday {
        Holiday {
            name,
            date: HolidayDate::Fixed(month, day),
            shift: WeekendShift::Stays,
            from_year: None,
            until_year: None,
        }
    }

    pub const fn easter(name: &'static str, offset: i16) -> Holiday {
        Holiday {
            name,
            date: HolidayDate::Easter(offset),
            shift: WeekendShift::Stays,
            from_year: None,
            until_year: None,
        }
    }

    pub const fn orthodox_easter(name: &'static str, offset: i16) -> Holiday {
        Holiday {
            name,
            date: HolidayDate::OrthodoxEaster(offset),
            shift: WeekendShift::Stays,
            from_year: None,
            until_year: None,
        }
    }

    pub const fn nth(name: &'static str, month: i8, weekday: Weekday, n: i8) -> Holiday {
        Holiday {
            name,
            date: HolidayDate::NthWeekday(month, weekday, n),
            shift: WeekendShift::Stays,
            from_year: None,
            until_year: None,
        }
    }

    pub const fn shifted(mut self, shift: WeekendShift) -> Holiday {
        self.shift = shift;
        self
    }

    pub const fn since_year(mut self, year: i16) -> Holiday {
        self.from_year = Some(year);
        self
    }

    fn exists_in(&self, year: i16) -> bool {
        self.from_year.is_none_or(|f| f <= year) && self.until_year.is_none_or(|u| year < u)
    }

    fn in_year(&self, year: i16) -> Option<Date> {
        match self.date {
            HolidayDate::Fixed(month, day) => jiff::civil::Date::new(year, month, day).ok(),
            HolidayDate::Easter(offset) => plus(easter_sunday(year), i64::from(offset)),
            HolidayDate::OrthodoxEaster(offset) => {
                plus(orthodox_easter_sunday(year)?, i64::from(offset))
            }
            HolidayDate::NthWeekday(month, weekday, n) => {
                let nth = if n == 0 { -1 } else { n };
                date(year, month, 1).nth_weekday_of_month(nth, weekday).ok()
            }
        }
    }
}

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

/// Orthodox Easter Sunday as a Gregorian date (Meeus' Julian algorithm plus
/// the Julian calendar's lag: 13 days from 1900 to 2099). `None` outside
/// those years.
pub fn orthodox_easter_sunday(year: i16) -> Option<Date> {
    if !(1900..=2099).contains(&year) {
        return None;
    }
    let y = i32::from(year);
    let a = y % 4;
    let b = y % 7;
    let c = y % 19;
    let d = (19 * c + 15) % 30;
    let e = (2 * a + 4 * b - d + 34) % 7;
    let month = (d + e + 114) / 31;
    let day = (d + e + 114) % 31 + 1;
    plus(date(year, month as i8, day as i8), 13)
}

fn plus(d: Date, days: i64) -> Option<Date> {
    d.checked_add(days.days()).ok()
}

/// The years whose holidays are computed: the Gregorian calendar's, up to
/// the last full year a date can hold. Outside them there are none.
const CALENDAR_YEARS: std::ops::RangeInclusive<i16> = 1583..=9998;

/// The days of `holidays` that fall in `year`: each holiday's own date and,
/// where it falls on a weekend, the weekday it is observed on. A holiday
/// observed on another day is still a holiday on its date (Independence
/// Day on Saturday 4 July 2026, observed Friday the 3rd: both), and a
/// holiday of the next year can be observed in this one (New Year's Day
/// 2028, a Saturday, observed on Friday 31 December 2027).
pub fn dates(holidays: &[Holiday], year: i16) -> Vec<Date> {
    // The Gregorian years the rules can be computed for (an instant given
    // as 9999-06-01 or a year before Christ panicked here).
    let computable = |y: &i16| (CALENDAR_YEARS).contains(y);
    let mut out: Vec<Date> = (year.saturating_sub(1)..=year.saturating_add(1))
        .filter(computable)
        .flat_map(|y| dates_of_year(holidays, y))
        .filter(|d| d.year() == year)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The holidays of `holidays` that belong to `year`: their dates and, for
/// those falling on a weekend, the weekdays they are observed on (which may
/// lie in the year before).
fn dates_of_year(holidays: &[Holiday], year: i16) -> Vec<Date> {
    let mut out = Vec::new();
    let mut substitutes = Vec::new();
    for holiday in holidays.iter().filter(|h| h.exists_in(year)) {
        let Some(day) = holiday.in_year(year) else {
            continue;
        };
        out.push(day);
        match holiday.shift {
            WeekendShift::Stays => {}
            WeekendShift::NearestWeekday => out.extend(match day.weekday() {
                Weekday::Saturday => plus(day, -1),
                Weekday::Sunday => plus(day, 1),
                _ => None,
            }),
            WeekendShift::NextFreeWeekday => substitutes.push(day),
            WeekendShift::SundayToMonday => {
                if day.weekday() == Weekday::Sunday {
                    out.extend(plus(day, 1));
                }
            }
        }
    }
    substitutes.sort();
    let mut placed: Vec<Date> = Vec::new();
    for day in substitutes {
        let mut d = day;
        while matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) || placed.contains(&d) {
            match plus(d, 1) {
                Some(next) => d = next,
                None => break,
            }
        }
        placed.push(d);
    }
    out.extend(placed);
    out
}

/// Whether dialgate knows `region`'s public holidays of every year (its
/// statute lists them); else only the dates configured are known.
pub fn has_calendar(region: &str) -> bool {
    super::statute(region).is_some_and(|s| !s.holidays.is_empty())
}

/// The public holidays of `region` in `year` (none without a statute).
pub fn calendar(region: &str, year: i16) -> Vec<Date> {
    super::statute(region).map_or_else(Vec::new, |statute| calendar_of(statute, region, year))
}

/// The statute's holidays of `year`, and a territory's own on top of its
/// country's (Réunion's 20 December).
fn calendar_of(statute: &super::Statute, region: &str, year: i16) -> Vec<Date> {
    let mut days = dates(&statute.holidays, year);
    if let Some(territory) = super::territories::territory(region) {
        days.extend(dates(territory.holidays, year));
        days.sort();
        days.dedup();
    }
    days
}

/// Whether `day` is a public holiday of `region` (or one of `extra`).
/// Calendars are computed once per region and year and cached per thread.
pub fn is_holiday(region: &str, day: Date, extra: &[Date]) -> bool {
    /// Holidays by region and year.
    type Calendars = Vec<((String, i16), Vec<Date>)>;
    thread_local! {
        static CALENDARS: std::cell::RefCell<Calendars> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if extra.contains(&day) {
        return true;
    }
    let Some(statute) = super::statute(region) else {
        return false;
    };
    CALENDARS.with(|calendars| {
        let mut calendars = calendars.borrow_mut();
        if let Some((_, days)) = calendars
            .iter()
            .find(|((r, y), _)| r == region && *y == day.year())
        {
            return days.contains(&day);
        }
        let days = calendar_of(statute, region, day.year());
        let holiday = days.contains(&day);
        calendars.push(((region.to_string(), day.year()), days));
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
    fn test_orthodox_easter_sundays() {
        for (year, expected) in [
            (2024, date(2024, 5, 5)),
            (2025, date(2025, 4, 20)),
            (2026, date(2026, 4, 12)),
            (2027, date(2027, 5, 2)),
        ] {
            assert_eq!(orthodox_easter_sunday(year), Some(expected), "{year}");
        }
        assert_eq!(orthodox_easter_sunday(2100), None);
    }

    /// Each holiday on its day, with the law that makes it one.
    #[test]
    fn test_holiday_table() {
        let cases = [
            (
                "IT",
                date(2026, 4, 6),
                true,
                "Easter Monday, L. 260/1949 art. 2",
            ),
            ("IT", date(2025, 4, 21), true, "Easter Monday"),
            ("IT", date(2027, 3, 29), true, "Easter Monday"),
            ("IT", date(2026, 12, 8), true, "Immacolata"),
            ("IT", date(2026, 12, 7), false, "the day before"),
            ("IT", date(2026, 6, 2), true, "Festa della Repubblica"),
            (
                "IT",
                date(2025, 10, 4),
                false,
                "San Francesco: not before 2026",
            ),
            ("IT", date(2026, 10, 4), true, "San Francesco, L. 151/2025"),
            ("IT", date(2027, 10, 4), true, "San Francesco, L. 151/2025"),
            ("FR", date(2026, 5, 14), true, "Ascension, C. trav. L3133-1"),
            ("FR", date(2026, 5, 25), true, "Whit Monday"),
            ("FR", date(2026, 7, 14), true, "Fete nationale"),
            ("ES", date(2026, 4, 3), true, "Good Friday"),
            (
                "ES",
                date(2026, 4, 6),
                true,
                "Easter Monday: regional in Spain, in several communities, closed everywhere",
            ),
            (
                "ES",
                date(2026, 4, 2),
                true,
                "Holy Thursday, nearly every community",
            ),
            ("ES", date(2026, 11, 2), true, "1 November fell on a Sunday"),
            (
                "ES",
                date(2026, 3, 19),
                false,
                "San José: a few communities only (extra_holidays)",
            ),
            ("GB", date(2026, 5, 25), true, "spring bank holiday"),
            ("GB", date(2026, 8, 31), true, "summer bank holiday"),
            (
                "GB",
                date(2026, 12, 28),
                true,
                "Boxing Day substitute (26th is a Saturday)",
            ),
            (
                "GB",
                date(2027, 12, 27),
                true,
                "Christmas on Saturday -> Monday 27th",
            ),
            (
                "GB",
                date(2027, 12, 28),
                true,
                "Boxing Day on Sunday -> Tuesday 28th",
            ),
            ("US", date(2026, 11, 26), true, "Thanksgiving"),
            (
                "US",
                date(2026, 7, 3),
                true,
                "Independence Day observed (4th is a Saturday)",
            ),
            (
                "US",
                date(2026, 7, 4),
                true,
                "Independence Day itself, a Saturday",
            ),
            (
                "US",
                date(2027, 12, 31),
                true,
                "New Year's Day 2028 (a Saturday) observed the Friday before",
            ),
            ("US", date(2028, 1, 1), true, "New Year's Day itself"),
            ("US", date(2026, 7, 6), false, "the Monday after"),
            (
                "GB",
                date(2027, 12, 25),
                true,
                "Christmas Day itself, a Saturday",
            ),
            (
                "GB",
                date(2027, 12, 26),
                true,
                "Boxing Day itself, a Sunday",
            ),
            ("GB", date(2027, 12, 29), false, "after both substitutes"),
            (
                "US",
                date(9999, 7, 5),
                false,
                "no calendar computed this late",
            ),
            (
                "IT",
                date(9999, 12, 25),
                false,
                "no calendar computed this late",
            ),
            (
                "GB",
                date(-2, 4, 1),
                false,
                "nor before the Gregorian calendar",
            ),
            ("US", date(2026, 1, 19), true, "MLK day"),
            ("US", date(2026, 5, 25), true, "Memorial Day"),
            ("DE", date(2026, 10, 3), true, "Tag der Deutschen Einheit"),
            ("PL", date(2026, 5, 3), true, "Constitution Day"),
            ("PL", date(2026, 6, 4), true, "Corpus Christi"),
            (
                "PL",
                date(2024, 12, 24),
                false,
                "Christmas Eve: not before 2025",
            ),
            ("PL", date(2025, 12, 24), true, "Christmas Eve from 2025"),
            ("RO", date(2026, 4, 10), true, "Orthodox Good Friday"),
            ("RO", date(2026, 4, 13), true, "Orthodox Easter Monday"),
            ("RO", date(2026, 12, 1), true, "Ziua Nationala"),
            ("JP", date(2026, 1, 1), false, "no statute, no calendar"),
        ];
        for (region, day, expected, what) in cases {
            assert_eq!(
                is_holiday(region, day, &[]),
                expected,
                "{region} {day} {what}"
            );
        }
        assert!(
            is_holiday("IT", date(2026, 6, 29), &[date(2026, 6, 29)]),
            "extra days count"
        );
    }
}
