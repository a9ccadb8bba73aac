//! Contact records: consents, customer relationships and opt-outs
//! (suppressions), stored durably in SQLite and indexed in memory by number
//! so the decision path never touches the database. A record is durable
//! before it takes effect, and takes effect for the very next check.
//!
//! Erasure (GDPR art. 17) deletes consents and relationships but keeps the
//! number suppressed: the opt-out then survives under a salted hash of the
//! number only, so the person is not called again and the raw number is not
//! kept where it need not be. What is kept, and why, is
//! [`KEPT_AFTER_ERASURE`], returned with every erasure.

mod compact;
pub mod derived_ids;
pub mod import;
pub mod journal;
pub mod ledger;
mod observations;
mod packed_rows;
mod presence;
mod record_names;
mod repeated_ids;
mod seen_ids;
pub mod service;
mod staged_ids;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Purpose;
use crate::number::NumberKey;
use compact::{Change, CompactIndex, Instants, OPEN, Slot, SlotError, Table};
use presence::Presence;
pub(crate) use record_names::RecordNames;
pub use record_names::StoredNames;
pub use store::{
    BULK_BATCH, BatchOrder, BulkCounts, BulkImport, Ceiling, ChangeEvent, ContactStore,
    PurgeCounts, RecordCeilings, Rectification, StoreError, Stored, SubjectRecords, database_path,
};

/// Something an erasure keeps: what, on which legal ground, until when.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Kept {
    /// Whether it is the decision log (kept for `log.retention_days`).
    #[serde(skip)]
    pub decision_log: bool,
    pub what: &'static str,
    pub ground: &'static str,
    pub until: &'static str,
}

impl Kept {
    /// One line, as EraseSubject returns it.
    pub fn describe(&self) -> String {
        format!("{}; ground: {}; {}", self.what, self.ground, self.until)
    }
}

/// What an erasure keeps, each with its legal ground and how long; every
/// other record of the subject (consents, relationships, registry
/// observations, the evidence in the change trail) is deleted.
pub const KEPT_AFTER_ERASURE: [Kept; 4] = [
    Kept {
        decision_log: false,
        what: "opt-out: a suppression under a salted hash of the number (no raw number), used only to avoid calling it again",
        ground: "GDPR art. 17(3)(b) and 21(3) (the objection must be honoured), ICO and CAP 10.10 suppression guidance",
        until: "kept without expiry",
    },
    Kept {
        decision_log: true,
        what: "decision log: every CheckCall decision about the number, with the number, as the record of each dial decision",
        ground: "GDPR art. 17(3)(b) and (e), US TSR 16 CFR 310.5 (5 years), DE UWG §7a",
        until: "kept for log.retention_days (default 1826 days) after each decision, then removed by audit purge",
    },
    Kept {
        decision_log: false,
        what: "change trail: the time, actor and kind of each change to the subject's records, with their contents (evidence, sources, dates) removed",
        ground: "GDPR art. 5(2) accountability",
        until: "kept as long as the trail",
    },
    Kept {
        decision_log: false,
        what: "erasure ledger: the time of the erasure, its controller and the salted hash of the number (no raw number), outside the backups, so that restoring a backup made before the erasure cannot bring the records back",
        ground: "GDPR art. 17(1) and 5(1)(e) (the erasure must reach the copies)",
        until: "kept while a backup made before it may be restored (dialgate does not prune the ledger)",
    },
];

/// A consent to be called by one controller for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consent {
    pub consent_id: String,
    pub controller: String,
    pub number: String,
    pub purpose: Purpose,
    pub granted_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub source: String,
    /// Who collected it: empty when the controller did itself ("own"),
    /// else the supplier named in the controller's declared contracts
    /// (`[[supplier]]`); a consent from a supplier not declared for the
    /// controller, or given outside the contract's term, grants nothing.
    #[serde(serialize_with = "supplier_or_own")]
    pub supplier: String,
    pub method: String,
    pub notice_version: String,
    pub evidence_ref: String,
    pub recorded_at: Timestamp,
}

/// Serialises an empty supplier as `own`.
fn supplier_or_own<S: serde::Serializer>(supplier: &str, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(if supplier.is_empty() { OWN } else { supplier })
}

/// The supplier name of a consent the controller collected itself.
pub const OWN: &str = "own";

/// A consent's `method` when it is the consumer's signed written agreement
/// to be called by this seller at this number (on paper or under E-SIGN):
/// the only consent that lifts the US national DNC (US-DNC-NAT, 47 CFR
/// 64.1200(c)(2)(ii)). Compared without case and surrounding spaces.
pub const WRITTEN_AGREEMENT: &str = "written_agreement";

/// Whether `method` names a signed written agreement ([`WRITTEN_AGREEMENT`]).
pub fn is_written_agreement(method: &[u8]) -> bool {
    method
        .trim_ascii()
        .eq_ignore_ascii_case(WRITTEN_AGREEMENT.as_bytes())
}

impl Consent {
    /// Whether the consent is in force at `at`.
    pub fn valid_at(&self, at: Timestamp) -> bool {
        self.granted_at <= at
            && self.revoked_at.is_none_or(|r| at < r)
            && self.expires_at.is_none_or(|e| at < e)
    }

    /// Whether it is the consumer's signed written agreement.
    pub fn is_written_agreement(&self) -> bool {
        is_written_agreement(self.method.as_bytes())
    }
}

/// Kind of a customer relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationshipKind {
    /// A contract or purchase; `ended_at` is the last purchase, delivery or payment.
    Customer,
    /// An inquiry or application by the person.
    Inquiry,
}

impl RelationshipKind {
    /// The kind [`RelationshipKind::as_str`] names (`None`: not a kind).
    pub fn parse(text: &str) -> Option<RelationshipKind> {
        match text {
            "customer" => Some(RelationshipKind::Customer),
            "inquiry" => Some(RelationshipKind::Inquiry),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipKind::Customer => "customer",
            RelationshipKind::Inquiry => "inquiry",
        }
    }
}

/// A relationship between a controller and the holder of a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relationship {
    pub relationship_id: String,
    pub controller: String,
    pub number: String,
    pub kind: RelationshipKind,
    pub started_at: Timestamp,
    /// `None` = ongoing.
    pub ended_at: Option<Timestamp>,
    pub recorded_at: Timestamp,
}

/// An opt-out: the number must not be called by `controller` (empty = anyone),
/// optionally only for one campaign, optionally until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub suppression_id: String,
    pub controller: String,
    pub campaign_id: String,
    /// Empty once the subject has been erased (kept by salted hash only).
    pub number: String,
    pub reason: String,
    pub source: String,
    pub added_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

impl Suppression {
    /// Whether the opt-out binds this controller and campaign at `at`.
    pub fn applies_to(&self, controller: &str, campaign_id: &str, at: Timestamp) -> bool {
        (self.controller.is_empty() || self.controller == controller)
            && (self.campaign_id.is_empty() || self.campaign_id == campaign_id)
            && self.expires_at.is_none_or(|e| at < e)
    }
}

/// What is held about one number, as the rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactView {
    pub consents: Vec<Consent>,
    pub relationships: Vec<Relationship>,
    pub suppressions: Vec<Suppression>,
}

/// A salted hash of an E.164 number, for records that must not keep it.
pub type SubjectHash = [u8; 32];

/// `bytes` in lower-case hex, written at once (`hex::encode` goes a
/// character at a time: a fifth of a bulk import's reading thread).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut text = vec![0; bytes.len() * 2];
    // Neither can fail: the buffer is twice the input, the digits ASCII.
    let _ = hex::encode_to_slice(bytes, &mut text);
    String::from_utf8(text).unwrap_or_default()
}

/// The hash of an E.164 number under `salt` (a store's subject hash).
pub(crate) fn salted_hash(salt: &[u8; 32], e164: &str) -> SubjectHash {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(e164.as_bytes());
    hasher.finalize().into()
}

/// In-memory index of the contact records, by number: the compact index of
/// what the rules read (see [`compact`]), behind a presence filter.
pub struct ContactIndex {
    salt: [u8; 32],
    records: CompactIndex,
    /// The numbers `records` may hold: most checks end here, lock-free.
    present: Presence,
    /// Opt-outs of erased subjects, by salted hash of the number.
    erased: DashMap<SubjectHash, Vec<Suppression>>,
    /// Whether `erased` holds anything: then (only) each check pays for the
    /// salted hash of its number.
    any_erased: AtomicBool,
    /// The interned names the records held carry, by role (see
    /// [`ContactIndex::record_names`]).
    record_names: std::sync::Mutex<RecordNames>,
}

/// Slots from which [`ContactIndex::size_presence`] marks on two threads.
const PARALLEL_PRESENCE: usize = if cfg!(test) { 64 } else { 1 << 20 };

impl std::fmt::Debug for ContactIndex {
    // Neither the subject salt (a secret of the store) nor the records
    // (personal data, millions of them) are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactIndex")
            .field("erased_subjects", &self.erased.len())
            .finish_non_exhaustive()
    }
}

impl ContactIndex {
    fn new(salt: [u8; 32], records: CompactIndex) -> ContactIndex {
        ContactIndex {
            salt,
            records,
            present: Presence::default(),
            erased: DashMap::new(),
            any_erased: AtomicBool::new(false),
            record_names: std::sync::Mutex::default(),
        }
    }

    /// The salted hash of an E.164 number.
    pub fn subject_hash(&self, e164: &str) -> SubjectHash {
        salted_hash(&self.salt, e164)
    }

    /// The records of a number as slots (usually none: no allocation then).
    pub(crate) fn slots(&self, key: NumberKey) -> Vec<Slot> {
        if self.present.may_contain(key) {
            self.records.slots(key)
        } else {
            Vec::new()
        }
    }

    /// The opt-outs kept by hash for an erased number.
    pub(crate) fn erased_suppressions(&self, e164: &str) -> Vec<Suppression> {
        if !self.any_erased.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.erased
            .get(&self.subject_hash(e164))
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Sizes the presence filter for `numbers` numbers, with every number of
    /// `slots` present: only before the index is shared (at load).
    fn size_presence(&mut self, numbers: usize, slots: &[Slot]) {
        self.present = Presence::for_numbers(numbers);
        // Each number is a write at a random place of a filter of up to
        // hundreds of megabytes (a cache miss each): many on two threads,
        // each taking half.
        let (low, high) = slots.split_at(slots.len() / 2);
        if slots.len() < PARALLEL_PRESENCE {
            self.mark_present(slots);
            return;
        }
        let index = &*self;
        std::thread::scope(|scope| {
            scope.spawn(|| index.mark_present(high));
            index.mark_present(low);
        });
    }

    /// Marks every number of `slots` present (before they become visible).
    fn mark_present(&self, slots: &[Slot]) {
        for slot in slots {
            self.present.insert(slot.key());
        }
    }

    /// See [`CompactIndex::forget_merged_additions`].
    pub(crate) fn forget_merged_additions(&self, slots: &[Slot]) {
        self.records.forget_merged_additions(slots);
    }

    pub(crate) fn add(&self, slot: Slot) {
        self.present.insert(slot.key());
        self.records.change(slot.key(), Change::Add(slot));
    }

    /// Holds an erased subject's opt-outs (kept by hash), and notes their
    /// names as binding; an error only if a name cannot be interned (the
    /// opt-outs are held all the same).
    pub(crate) fn set_erased(
        &self,
        hash: SubjectHash,
        suppressions: Vec<Suppression>,
    ) -> Result<(), SlotError> {
        let mut names = RecordNames::default();
        let mut interned = Ok(());
        for suppression in &suppressions {
            match (
                self.records.names.intern(&suppression.controller),
                self.records.names.intern(&suppression.campaign_id),
            ) {
                (Ok(controller), Ok(campaign)) => names.note_binding(controller, campaign),
                (Err(err), _) | (_, Err(err)) => interned = Err(err),
            }
        }
        self.erased.insert(hash, suppressions);
        self.any_erased.store(true, Ordering::Release);
        self.note_record_names(&names);
        interned
    }

    /// Notes the controller of a withdrawal kept outside the index (by the
    /// subject's hash) as one whose records bind.
    pub(crate) fn note_binding_controller(&self, controller: &str) -> Result<(), SlotError> {
        let mut names = RecordNames::default();
        names.note_binding(self.records.names.intern(controller)?, 0);
        self.note_record_names(&names);
        Ok(())
    }

    /// Notes the names of records added to the index.
    pub(crate) fn note_record_names(&self, names: &RecordNames) {
        self.record_names
            .lock()
            .expect("record names lock")
            .merge(names);
    }

    /// The names the records held carry, by role, each once (see
    /// [`StoredNames`]).
    pub fn record_names(&self) -> StoredNames {
        let noted = self.record_names.lock().expect("record names lock").clone();
        let text = |ids: &[u32]| -> Vec<String> {
            ids.iter()
                .map(|id| self.records.names.name(*id).to_string())
                .collect()
        };
        let mut names = StoredNames {
            controllers: text(&noted.controllers),
            binding: text(&noted.binding),
            campaigns: text(&noted.campaigns),
        };
        for list in [
            &mut names.controllers,
            &mut names.binding,
            &mut names.campaigns,
        ] {
            list.retain(|name| !name.is_empty());
            list.sort_unstable();
            list.dedup();
        }
        names
    }

    pub(crate) fn revoke(
        &self,
        key: NumberKey,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
    ) {
        // A controller never interned has no records to revoke.
        if let Some(controller) = self.records.names.get(controller) {
            let mut names = RecordNames::default();
            names.note_binding(controller, 0);
            self.note_record_names(&names);
            self.records.change(
                key,
                Change::Revoke {
                    controller,
                    purpose: purpose.map(purpose_code),
                    at: at.as_microsecond(),
                },
            );
        }
    }

    /// Forgets the record stored at `row` of `table` from the number `key`
    /// (before a corrected copy of it is added).
    pub(crate) fn remove(&self, key: NumberKey, table: Table, row: i64) {
        self.records.change(key, Change::Remove { table, row });
    }

    /// Forgets consents, relationships and keyed opt-outs of `controller`
    /// (empty = all); the store keeps the opt-outs by hash.
    pub(crate) fn erase(&self, key: NumberKey, controller: &str) {
        let scope = if controller.is_empty() {
            Some(None)
        } else {
            self.records.names.get(controller).map(Some)
        };
        if let Some(controller) = scope {
            self.records.change(key, Change::Erase { controller });
        }
    }

    /// The slot of a consent stored at `row`.
    pub(crate) fn consent_slot(
        &self,
        key: NumberKey,
        row: i64,
        consent: &Consent,
    ) -> Result<Slot, SlotError> {
        let controller = self.records.names.intern(&consent.controller)?;
        let mut names = RecordNames::default();
        if consent.revoked_at.is_some() {
            names.note_binding(controller, 0);
        } else {
            names.note(controller);
        }
        self.note_record_names(&names);
        Slot::new(
            key,
            Table::Consent,
            row,
            consent_detail(consent.purpose, consent.method.as_bytes()),
            controller,
            // A consent has no campaign: the field holds its supplier.
            self.records.names.intern(&consent.supplier)?,
            Instants {
                t0: consent.granted_at.as_microsecond(),
                t1: consent.revoked_at.map_or(OPEN, |t| t.as_microsecond()),
                t2: consent.expires_at.map_or(OPEN, |t| t.as_microsecond()),
            },
        )
    }

    /// The slot of a relationship stored at `row`.
    pub(crate) fn relationship_slot(
        &self,
        key: NumberKey,
        row: i64,
        relationship: &Relationship,
    ) -> Result<Slot, SlotError> {
        let controller = self.records.names.intern(&relationship.controller)?;
        let mut names = RecordNames::default();
        names.note(controller);
        self.note_record_names(&names);
        Slot::new(
            key,
            Table::Relationship,
            row,
            match relationship.kind {
                RelationshipKind::Customer => 0,
                RelationshipKind::Inquiry => 1,
            },
            controller,
            0,
            Instants {
                t0: relationship.started_at.as_microsecond(),
                t1: relationship.ended_at.map_or(OPEN, |t| t.as_microsecond()),
                t2: OPEN,
            },
        )
    }

    /// The slot of an opt-out stored at `row`.
    pub(crate) fn suppression_slot(
        &self,
        key: NumberKey,
        row: i64,
        suppression: &Suppression,
    ) -> Result<Slot, SlotError> {
        let controller = self.records.names.intern(&suppression.controller)?;
        let campaign = self.records.names.intern(&suppression.campaign_id)?;
        let mut names = RecordNames::default();
        names.note_binding(controller, campaign);
        self.note_record_names(&names);
        Slot::new(
            key,
            Table::Suppression,
            row,
            0,
            controller,
            campaign,
            Instants {
                t0: suppression.created_at.as_microsecond(),
                t1: suppression.expires_at.map_or(OPEN, |t| t.as_microsecond()),
                t2: OPEN,
            },
        )
    }

    /// The record of a slot, as the rules read it: `id` from the store;
    /// what the rules do not read (evidence, sources) is left empty.
    pub(crate) fn record(&self, slot: &Slot, id: String, e164: &str) -> Option<Record> {
        let at = |us: i64| (us != OPEN).then(|| crate::decision_log::from_micros(us));
        let controller = self.records.names.name(slot.controller()).to_string();
        let t0 = crate::decision_log::from_micros(slot.t0);
        Some(match slot.table() {
            Table::Consent => Record::Consent(Consent {
                consent_id: id,
                controller,
                number: e164.to_string(),
                // A code no purpose has grants nothing (never written).
                purpose: *PURPOSES.get(usize::from(slot.detail() & PURPOSE_BITS))?,
                granted_at: t0,
                revoked_at: at(slot.t1),
                expires_at: at(slot.t2),
                source: String::new(),
                supplier: self.records.names.name(slot.campaign()).to_string(),
                // The rules read only whether it is a written agreement.
                method: if slot.detail() & WRITTEN_BIT != 0 {
                    WRITTEN_AGREEMENT.to_string()
                } else {
                    String::new()
                },
                notice_version: String::new(),
                evidence_ref: String::new(),
                recorded_at: t0,
            }),
            Table::Relationship => Record::Relationship(Relationship {
                relationship_id: id,
                controller,
                number: e164.to_string(),
                kind: if slot.detail() == 0 {
                    RelationshipKind::Customer
                } else {
                    RelationshipKind::Inquiry
                },
                started_at: t0,
                ended_at: at(slot.t1),
                recorded_at: t0,
            }),
            Table::Suppression => Record::Suppression(Suppression {
                suppression_id: id,
                controller,
                campaign_id: self.records.names.name(slot.campaign()).to_string(),
                number: e164.to_string(),
                reason: String::new(),
                source: String::new(),
                added_by: String::new(),
                created_at: t0,
                expires_at: at(slot.t1),
            }),
        })
    }

    /// Merges pending changes into the base when they have grown.
    fn compact_if_grown(&self) -> Result<(), SlotError> {
        let (base, pending) = self.records.sizes();
        if pending > (base / 16).max(65_536) {
            self.records.compact()?;
        }
        Ok(())
    }
}

/// One record of a number, read back from a slot.
pub(crate) enum Record {
    Consent(Consent),
    Relationship(Relationship),
    Suppression(Suppression),
}

/// Purposes by their code in a slot.
pub(crate) const PURPOSES: [Purpose; 4] = [
    Purpose::Marketing,
    Purpose::MarketResearch,
    Purpose::Statistical,
    Purpose::Profiling,
];

fn purpose_code(purpose: Purpose) -> u8 {
    match purpose {
        Purpose::Marketing => 0,
        Purpose::MarketResearch => 1,
        Purpose::Statistical => 2,
        Purpose::Profiling => 3,
    }
}

/// The bits of a consent slot's detail that hold its purpose's code.
pub(crate) const PURPOSE_BITS: u8 = 0b1_1111;
/// The bit of a consent slot's detail set when its method is a signed
/// written agreement ([`WRITTEN_AGREEMENT`]).
pub(crate) const WRITTEN_BIT: u8 = 0b10_0000;

/// A consent slot's detail: its purpose's code, and whether its method is
/// a signed written agreement.
fn consent_detail(purpose: Purpose, method: &[u8]) -> u8 {
    purpose_code(purpose)
        | if is_written_agreement(method) {
            WRITTEN_BIT
        } else {
            0
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot whose purpose code no purpose has (never written, but a
    /// clamp turned it into the last purpose, profiling) grants nothing.
    #[test]
    fn test_an_unknown_purpose_code_is_no_consent() {
        let index = ContactIndex::new([0; 32], CompactIndex::default());
        let key = NumberKey::from_e164("+390212345678").unwrap();
        let slot = |code: u8| {
            Slot::new(
                key,
                Table::Consent,
                1,
                code,
                0,
                0,
                Instants {
                    t0: 0,
                    t1: OPEN,
                    t2: OPEN,
                },
            )
            .unwrap()
        };
        assert!(matches!(
            index.record(&slot(3), "c".into(), "+390212345678"),
            Some(Record::Consent(c)) if c.purpose == Purpose::Profiling
        ));
        assert!(
            index
                .record(&slot(9), "c".into(), "+390212345678")
                .is_none()
        );
    }
}
