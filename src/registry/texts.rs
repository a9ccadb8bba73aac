//! What checks against a snapshot report. The texts are the same for every
//! number checked against one snapshot, and formatting them (the dates above
//! all) cost more than the set lookup itself, so each snapshot formats them
//! once, on first use, and every check clones the one that applies.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jiff::Timestamp;
use jiff::civil::Date;

use super::stale_from;

/// The texts of checks against one snapshot, for one registry configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTexts {
    registry_id: String,
    valid_days: u32,
    /// `registry@version`, the data version a decision rests on.
    pub version_label: String,
    /// Block-lists: the first instant the data is stale, and what to say
    /// then; `None` when the snapshot carries no check date.
    pub stale: Option<(Timestamp, String)>,
    /// Block-lists: the first instant the data says anything about (the
    /// newest check's day), and what to say before it.
    pub checked_from: Option<(Timestamp, String)>,
    /// Block-lists: the number is not listed (only with dated data).
    pub clear: String,
    /// Block-lists: the number is listed.
    pub listed: String,
    /// Block-lists: the number is outside the data's coverage.
    pub not_covered: String,
    /// Block-lists: the data carries no check date.
    pub undated: String,
    /// Allow-lists: per controller, the texts of each of its batches, in
    /// the snapshot's batch order (a block-list's one batch has controller "").
    pub cleared: BTreeMap<String, ControllerTexts>,
}

/// Allow-lists: what checks for one controller report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerTexts {
    /// The number is in none of the controller's batches.
    pub never_cleared: String,
    /// Per batch: the number was cleared on its date, and when that is stale.
    pub batches: Vec<BatchTexts>,
}

/// Allow-lists: the texts of one batch of cleared numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTexts {
    pub clear: String,
    /// The start of the batch's check day: a clearance says nothing earlier.
    pub checked_from: Timestamp,
    pub not_yet: String,
    pub stale_from: Timestamp,
    pub stale: String,
}

/// What the texts of one snapshot are made from: its version, check dates,
/// and the check date of every batch by controller (in batch order).
#[derive(Debug, Clone, Copy)]
pub struct TextSource<'a> {
    pub version: u64,
    pub oldest_check: Option<Date>,
    pub newest_check: Option<Date>,
    pub batches: &'a BTreeMap<String, Vec<Date>>,
    /// Block-lists: whether the snapshot states its coverage.
    pub coverage_stated: bool,
}

impl SnapshotTexts {
    /// The texts of `source` for registry `id` with data valid `valid_days`.
    pub fn new(source: TextSource<'_>, id: &str, valid_days: u32) -> SnapshotTexts {
        let version = source.version;
        let checked_at = source.oldest_check;
        SnapshotTexts {
            registry_id: id.to_string(),
            valid_days,
            version_label: format!("{id}@{version}"),
            stale: checked_at.map(|checked_at| {
                let until = stale_from(checked_at, valid_days);
                (until, stale_text(id, checked_at, until, valid_days))
            }),
            checked_from: source.newest_check.map(|date| {
                (checked_from(date), not_yet_text(id, date))
            }),
            clear: checked_at
                .map(|date| format!("not listed in registry {id} v{version} checked {date}"))
                .unwrap_or_default(),
            listed: format!("listed in registry {id} v{version}"),
            not_covered: if source.coverage_stated {
                format!("registry {id} v{version} does not cover this number's area")
            } else {
                format!(
                    "registry {id} v{version} states no coverage: re-import the full list with --covers"
                )
            },
            undated: format!("registry {id} has no dated data"),
            cleared: source
                .batches
                .iter()
                .map(|(controller, dates)| {
                    let texts = ControllerTexts {
                        never_cleared: never_cleared_text(id, version, controller),
                        batches: dates
                            .iter()
                            .map(|&date| {
                                let until = stale_from(date, valid_days);
                                BatchTexts {
                                    clear: format!(
                                        "cleared for {controller} in registry {id} v{version} on {date}"
                                    ),
                                    checked_from: checked_from(date),
                                    not_yet: not_yet_text(id, date),
                                    stale_from: until,
                                    stale: stale_text(id, date, until, valid_days),
                                }
                            })
                            .collect(),
                    };
                    (controller.clone(), texts)
                })
                .collect(),
        }
    }

    /// Whether these texts were made for registry `id` and `valid_days`.
    pub fn is_for(&self, id: &str, valid_days: u32) -> bool {
        self.registry_id == id && self.valid_days == valid_days
    }
}

/// Allow-lists: what to say when `controller` never cleared the number.
pub fn never_cleared_text(id: &str, version: u64, controller: &str) -> String {
    format!("never cleared for controller {controller} in registry {id} v{version}")
}

/// The first instant data checked on `date` speaks for (midnight UTC).
fn checked_from(date: Date) -> Timestamp {
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

/// What to say of data checked after the instant decided (screening `at`).
pub fn not_yet_text(id: &str, checked_at: Date) -> String {
    format!("registry {id} data was checked {checked_at}: it says nothing about an earlier instant")
}

/// What to say of data checked on `checked_at` that is stale from `until`.
pub fn stale_text(id: &str, checked_at: Date, until: Timestamp, valid_days: u32) -> String {
    format!("registry {id} data checked {checked_at} expired at {until} ({valid_days} days)")
}

/// The texts a snapshot formatted on first use. Not part of the snapshot's
/// identity: two snapshots compare equal whether or not either has them yet.
#[derive(Debug, Default, Clone)]
pub struct TextsMemo(pub OnceLock<SnapshotTexts>);

impl PartialEq for TextsMemo {
    fn eq(&self, _: &TextsMemo) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RegistryKind;
    use crate::registry::snapshot::{Batch, Snapshot, SnapshotSource};

    fn snapshot(checked_at: Option<&str>) -> Snapshot {
        let mut batches = BTreeMap::new();
        if let Some(date) = checked_at {
            batches.insert(
                String::new(),
                vec![Batch {
                    checked_at: date.parse().unwrap(),
                    numbers: Default::default(),
                }],
            );
        }
        Snapshot {
            registry_id: "it-rpo".into(),
            kind: RegistryKind::Blocklist,
            country: "IT".into(),
            version: 3,
            created_at: Timestamp::UNIX_EPOCH,
            source: SnapshotSource {
                file: "f".into(),
                format: "lines".into(),
                mode: "replace".into(),
                import_seconds: 0.0,
            },
            coverage: None,
            batches,
            replaced: Default::default(),
            texts: TextsMemo::default(),
        }
    }

    #[test]
    fn test_texts_are_formatted_for_the_asking_configuration() {
        let snap = snapshot(Some("2026-11-01"));
        let texts = snap.texts("it-rpo", 15);
        assert_eq!(texts.version_label, "it-rpo@3");
        assert_eq!(
            texts.clear,
            "not listed in registry it-rpo v3 checked 2026-11-01"
        );
        let (until, stale) = texts.stale.clone().unwrap();
        assert_eq!(until, "2026-11-16T00:00:00Z".parse::<Timestamp>().unwrap());
        assert!(stale.contains("(15 days)"), "{stale}");
        // Another configuration gets its own texts, not the cached ones.
        let other = snap.texts("it-rpo", 30);
        assert!(other.stale.as_ref().unwrap().1.contains("(30 days)"));
        assert!(matches!(other, std::borrow::Cow::Owned(_)));
        assert!(matches!(
            snap.texts("it-rpo", 15),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn test_undated_snapshot_has_no_clear_or_stale_text() {
        let snap = snapshot(None);
        let texts = snap.texts("it-rpo", 15);
        assert_eq!(texts.stale, None);
        assert_eq!(texts.undated, "registry it-rpo has no dated data");
    }

    #[test]
    fn test_allowlist_texts_follow_the_batches() {
        let mut snap = snapshot(None);
        snap.kind = RegistryKind::Allowlist;
        let batch = |date: &str| Batch {
            checked_at: date.parse().unwrap(),
            numbers: Default::default(),
        };
        snap.batches.insert(
            "acme".into(),
            vec![batch("2026-11-10"), batch("2026-11-01")],
        );
        let texts = snap.texts("it-rpo", 15);
        let acme = &texts.cleared["acme"];
        assert_eq!(
            acme.never_cleared,
            "never cleared for controller acme in registry it-rpo v3"
        );
        assert_eq!(acme.batches.len(), 2);
        assert_eq!(
            acme.batches[1].clear,
            "cleared for acme in registry it-rpo v3 on 2026-11-01"
        );
        assert_eq!(
            acme.batches[0].stale_from,
            "2026-11-25T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn test_memo_does_not_change_equality() {
        let a = snapshot(Some("2026-11-01"));
        let b = a.clone();
        let _ = a.texts("it-rpo", 15);
        assert_eq!(a, b);
    }
}
