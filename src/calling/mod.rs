//! Calling windows in the called person's local time, public holidays and
//! attempt caps. Everything here is a pure function of the rules, the
//! number's whereabouts and `now`.
//!
//! A window is the intersection of layers: the destination's statutory week
//! (configurable per destination), a state overlay (US), and the campaign's
//! own hours, which can only narrow it. A number that may be in several time
//! zones must be inside the window in all of them.

mod memo;
pub mod zones;

pub use memo::WindowMemo;

use std::collections::BTreeMap;

use crate::statutes::holidays;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// Local minutes `[start, end)` of a day; `end` may be 1440 (midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u16,
    pub end: u16,
}

impl Span {
    /// Parses `HH:MM-HH:MM` (`24:00` allowed as an end).
    pub fn parse(text: &str) -> Option<Span> {
        let (start, end) = text.trim().split_once('-')?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let span = Span {
            start: minutes(start)?,
            end: minutes(end)?,
        };
        (span.start < span.end).then_some(span)
    }

    /// Whole hours `[start, end)`.
    pub const fn hours(start: u16, end: u16) -> Span {
        Span {
            start: start * 60,
            end: end * 60,
        }
    }
}

/// Permitted spans of one day; empty = no calls that day.
pub type DaySpans = Vec<Span>;

/// A weekly calling window. `None` leaves that day to the other layers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeeklyHours {
    /// Monday to Sunday.
    pub days: [Option<DaySpans>; 7],
    /// On public holidays (instead of the weekday).
    pub holidays: Option<DaySpans>,
    /// On the day before a public holiday (narrows the weekday).
    pub pre_holidays: Option<DaySpans>,
}

impl WeeklyHours {
    /// The same spans Monday to Friday; no calls on weekends.
    pub fn weekdays(spans: &[Span]) -> WeeklyHours {
        WeeklyHours {
            days: std::array::from_fn(|i| Some(if i < 5 { spans.to_vec() } else { Vec::new() })),
            ..Default::default()
        }
    }

    /// The same spans every day of the week.
    pub fn every_day(spans: &[Span]) -> WeeklyHours {
        WeeklyHours {
            days: std::array::from_fn(|_| Some(spans.to_vec())),
            ..Default::default()
        }
    }

    /// Replaces the days `other` sets.
    pub fn overridden_by(&self, other: &WeeklyHours) -> WeeklyHours {
        WeeklyHours {
            days: std::array::from_fn(|i| other.days[i].clone().or_else(|| self.days[i].clone())),
            holidays: other.holidays.clone().or_else(|| self.holidays.clone()),
            pre_holidays: other
                .pre_holidays
                .clone()
                .or_else(|| self.pre_holidays.clone()),
        }
    }

    /// The same window with every day it leaves unset closed: for a
    /// window that is the whole law of a destination (an override where no
    /// statute sets hours), not for a layer over another one.
    pub fn closing_unset_days(&self) -> WeeklyHours {
        WeeklyHours {
            days: std::array::from_fn(|i| Some(self.days[i].clone().unwrap_or_default())),
            holidays: self.holidays.clone(),
            pre_holidays: self.pre_holidays.clone(),
        }
    }

    /// The spans this layer permits on `day`; `None` when it does not constrain it.
    fn spans_on(&self, day: Date, is_holiday: bool, is_pre_holiday: bool) -> Option<DaySpans> {
        if is_holiday && let Some(spans) = &self.holidays {
            return Some(spans.clone());
        }
        let weekday = self.days[day.weekday().to_monday_zero_offset() as usize].clone();
        match (&self.pre_holidays, is_pre_holiday) {
            (Some(pre), true) => Some(match weekday {
                Some(w) => intersect_spans(&w, pre),
                None => pre.clone(),
            }),
            _ => weekday,
        }
    }
}

/// A cap on ALLOW decisions per number and controller in a rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimit {
    pub max_attempts: u32,
    pub window: SignedDuration,
}

/// The calling-window rules of one destination, as compiled by
/// [`crate::policy`] for one period of the law.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationRules {
    /// The statutory week (or its override); `None` = no statutory window.
    pub hours: Option<WeeklyHours>,
    /// Regional or extra public holidays (the statute's own are in [`holidays`]).
    pub extra_holidays: Vec<Date>,
    /// Overlays by state (US), narrowing `hours`.
    pub states: BTreeMap<String, WeeklyHours>,
    /// A call is allowed only while the window stays open at least this
    /// long (`[calling] window_margin_seconds`).
    pub close_margin: jiff::SignedDuration,
}

/// Where and under which rules a call would ring.
#[derive(Debug, Clone, Copy)]
pub struct WindowInput<'a> {
    pub region: &'a str,
    pub zones: &'a [&'a str],
    /// Stable id of `zones` ([`zones::Whereabouts::zones_id`]).
    pub zones_id: u32,
    /// The state, when known (US).
    pub state: Option<&'a str>,
    pub destination: &'a DestinationRules,
    /// The campaign's own hours, narrowing the destination's.
    pub campaign: Option<&'a WeeklyHours>,
    /// Stable id of `destination` and `campaign` together (the policy era's
    /// id), for memoised answers; 0 = do not memoise.
    pub memo_key: u32,
}

/// Outcome of the calling-window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowCheck {
    /// No window applies to this destination and campaign.
    Unrestricted,
    /// Inside the window, which closes at this instant.
    Inside { closes_at: Timestamp },
    /// Outside; the next permitted instant within the search horizon, if any.
    Outside { next_open: Option<Timestamp> },
    /// A window applies but the local time of the number is unknown.
    UnknownZone,
}

/// How far ahead `next_open` is searched.
const HORIZON_DAYS: i64 = 21;

/// Checks whether `now` is inside the calling window.
pub fn check(input: &WindowInput<'_>, now: Timestamp) -> WindowCheck {
    let layers = layers(input);
    if layers.is_empty() {
        return WindowCheck::Unrestricted;
    }
    if input.zones.is_empty() {
        return WindowCheck::UnknownZone;
    }
    let zones: Option<Vec<TimeZone>> = input.zones.iter().map(|z| time_zone(z)).collect();
    let Some(zones) = zones else {
        return WindowCheck::UnknownZone;
    };
    // Fast path (the usual case): inside today's window in every zone.
    let mut closes_at: Option<Timestamp> = None;
    for tz in &zones {
        let local = now.to_zoned(tz.clone());
        let minute = (local.hour() as u16) * 60 + local.minute() as u16;
        let span = day_spans(input, &layers, local.date())
            .into_iter()
            .find(|s| s.start <= minute && minute < s.end);
        // The span's edges as instants (in a skipped or repeated hour the
        // wall clock alone does not tell: see `local_instant`).
        let edges = span.and_then(|s| {
            let start = local_instant(tz, local.date(), s.start, Edge::Start)?;
            let end = local_instant(tz, local.date(), s.end, Edge::End)?;
            (start <= now && now < end).then_some(end)
        });
        match edges {
            Some(end) => closes_at = Some(closes_at.map_or(end, |c| c.min(end))),
            None => {
                closes_at = None;
                break;
            }
        }
    }
    if let Some(closes_at) = closes_at {
        return WindowCheck::Inside { closes_at };
    }
    // Outside (or at a day boundary): look ahead, a few days first.
    for horizon in [2, 7, HORIZON_DAYS] {
        let intervals = allowed_intervals(input, &layers, &zones, now, horizon);
        if let Some(&(_, end)) = intervals
            .iter()
            .find(|(start, end)| *start <= now && now < *end)
        {
            return WindowCheck::Inside { closes_at: end };
        }
        if let Some(&(start, _)) = intervals.iter().find(|(start, _)| *start > now) {
            return WindowCheck::Outside {
                next_open: Some(start),
            };
        }
    }
    WindowCheck::Outside { next_open: None }
}

/// Time zones by name, looked up once.
fn time_zone(name: &str) -> Option<TimeZone> {
    type Zones = dashmap::DashMap<String, Option<TimeZone>, foldhash::fast::RandomState>;
    static ZONES: std::sync::LazyLock<Zones> = std::sync::LazyLock::new(Zones::default);
    if let Some(tz) = ZONES.get(name) {
        return tz.clone();
    }
    let tz = crate::tz_data::zone(name).ok();
    ZONES.insert(name.to_string(), tz.clone());
    tz
}

fn layers<'a>(input: &WindowInput<'a>) -> Vec<&'a WeeklyHours> {
    let mut layers: Vec<&WeeklyHours> = Vec::new();
    if let Some(hours) = &input.destination.hours {
        layers.push(hours);
    }
    match input.state {
        Some(state) => layers.extend(input.destination.states.get(state)),
        // Unknown state: every state's overlay may apply.
        None => layers.extend(input.destination.states.values()),
    }
    layers.extend(input.campaign);
    layers
}

type Interval = (Timestamp, Timestamp);

/// UTC intervals permitted in every zone, over local days around `now`.
fn allowed_intervals(
    input: &WindowInput<'_>,
    layers: &[&WeeklyHours],
    zones: &[TimeZone],
    now: Timestamp,
    horizon_days: i64,
) -> Vec<Interval> {
    let mut result: Option<Vec<Interval>> = None;
    for tz in zones {
        let today = now.to_zoned(tz.clone()).date();
        let mut intervals = Vec::new();
        for offset in -1..=horizon_days {
            let Ok(day) = today.checked_add(offset.days()) else {
                continue;
            };
            for span in day_spans(input, layers, day) {
                if let (Some(start), Some(end)) = (
                    local_instant(tz, day, span.start, Edge::Start),
                    local_instant(tz, day, span.end, Edge::End),
                ) {
                    intervals.push((start, end));
                }
            }
        }
        result = Some(match result {
            None => intervals,
            Some(previous) => intersect_intervals(&previous, &intervals),
        });
    }
    result.unwrap_or_default()
}

/// The year of `day` (or of the next day, for hours on the day before a
/// holiday) whose public holidays of the destination are unknown while a
/// layer sets hours for them: no statute calendar, and no
/// `extra_holidays` date of that year (found by review: dates listed for
/// one year let every holiday of the next one be called as a weekday).
fn unknown_holiday_year(
    input: &WindowInput<'_>,
    layers: &[&WeeklyHours],
    day: Date,
) -> Option<i16> {
    let on_holidays = layers.iter().any(|l| l.holidays.is_some());
    let before_holidays = layers.iter().any(|l| l.pre_holidays.is_some());
    if !(on_holidays || before_holidays) || holidays::has_calendar(input.region) {
        return None;
    }
    let listed = |year: i16| {
        input
            .destination
            .extra_holidays
            .iter()
            .any(|d| d.year() == year)
    };
    let next_year = day.tomorrow().map_or(day.year(), |next| next.year());
    if !listed(day.year()) {
        return Some(day.year());
    }
    (before_holidays && !listed(next_year)).then_some(next_year)
}

/// The year whose holidays are unknown (see [`unknown_holiday_year`]) on
/// the local day of `now` in any of the input's zones, for the reason's text.
pub fn holidays_unknown(input: &WindowInput<'_>, now: Timestamp) -> Option<i16> {
    let layers = layers(input);
    input
        .zones
        .iter()
        .filter_map(|z| time_zone(z))
        .find_map(|tz| unknown_holiday_year(input, &layers, now.to_zoned(tz).date()))
}

fn day_spans(input: &WindowInput<'_>, layers: &[&WeeklyHours], day: Date) -> DaySpans {
    if unknown_holiday_year(input, layers, day).is_some() {
        return Vec::new();
    }
    let is_holiday = holidays::is_holiday(input.region, day, &input.destination.extra_holidays);
    let is_pre_holiday = day.tomorrow().is_ok_and(|next| {
        holidays::is_holiday(input.region, next, &input.destination.extra_holidays)
    });
    let mut spans = vec![Span {
        start: 0,
        end: 1440,
    }];
    for layer in layers {
        if let Some(layer_spans) = layer.spans_on(day, is_holiday, is_pre_holiday) {
            spans = intersect_spans(&spans, &layer_spans);
        }
    }
    spans
}

/// Which edge of a window a local time is.
#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

/// The instant of `minutes` past midnight of `day` in `tz`. A time the
/// clocks skip (spring forward) or repeat (autumn) is read on the strict
/// side: an end at its earlier reading (before the gap; the first of the
/// repeated hour), a start at its later one (found by review: jiff's
/// default read an end inside the gap past it, and the window stayed open
/// after the jump).
fn local_instant(tz: &TimeZone, day: Date, minutes: u16, edge: Edge) -> Option<Timestamp> {
    let (day, minutes) = if minutes >= 1440 {
        (day.tomorrow().ok()?, 0)
    } else {
        (day, minutes)
    };
    let time = jiff::civil::time((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
    let readings = tz.to_ambiguous_timestamp(day.to_datetime(time));
    match edge {
        Edge::Start => readings.later(),
        Edge::End => readings.earlier(),
    }
    .ok()
}

fn intersect_spans(a: &[Span], b: &[Span]) -> DaySpans {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let start = x.start.max(y.start);
            let end = x.end.min(y.end);
            if start < end {
                out.push(Span { start, end });
            }
        }
    }
    out.sort_by_key(|s| s.start);
    out
}

fn intersect_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let start = x.0.max(y.0);
            let end = x.1.min(y.1);
            if start < end {
                out.push((start, end));
            }
        }
    }
    out.sort();
    out
}

/// The configuration keys of the weekdays, Monday first.
pub const WEEKDAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[cfg(test)]
mod tests;
