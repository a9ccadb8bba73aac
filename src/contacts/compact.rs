//! The compact in-memory contact index: per record only what the rules
//! read (kind, controller, campaign, purpose, three instants) in a 44-byte
//! slot, with the record's row in the store for everything else (its id,
//! evidence, sources), read from the store on demand.
//!
//! Three layers, read together for every lookup:
//! - the **base**: every slot in one array, grouped by a hash of the number
//!   with a directory of bucket offsets (no per-number allocation);
//! - the **frozen** changes: the changes being merged into a new base;
//! - the **active** changes: every change since, by number.
//!
//! A change (a record added, consents revoked, a subject erased) is pushed
//! to the active layer and is visible to the next lookup. Compaction
//! freezes the active layer, merges it into a new base off the decision
//! path, and swaps the new base in: lookups never wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use crate::number::NumberKey;

/// "No instant": an open end (not revoked, no expiry, ongoing).
pub(crate) const OPEN: i64 = i64::MAX;

/// The table a slot's record lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Table {
    Consent = 0,
    Relationship = 1,
    Suppression = 2,
}

impl Table {
    fn from_bits(bits: u32) -> Table {
        match bits & 3 {
            0 => Table::Consent,
            1 => Table::Relationship,
            _ => Table::Suppression,
        }
    }
}

/// The most interned strings (controllers and campaigns): a controller id
/// takes 24 bits of a slot.
const MAX_INTERNED: u32 = 1 << 24;

/// One contact record as the rules read it.
///
/// - consent: `t0` granted, `t1` revoked, `t2` expires, `detail` purpose;
/// - relationship: `t0` started, `t1` ended, `detail` kind;
/// - opt-out: `t0` created, `t1` expires, `campaign`.
///
/// Instants are microseconds since the epoch, [`OPEN`] for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub(crate) struct Slot {
    key: u64,
    pub t0: i64,
    pub t1: i64,
    pub t2: i64,
    /// The record's rowid in its table.
    row: u32,
    /// Table (2 bits) | detail (6 bits) | controller (24 bits).
    meta: u32,
    /// Interned campaign id (0: every campaign).
    campaign: u32,
}

/// Instants as slots hold them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Instants {
    pub t0: i64,
    pub t1: i64,
    pub t2: i64,
}

impl Slot {
    pub(crate) fn new(
        key: NumberKey,
        table: Table,
        row: i64,
        detail: u8,
        controller: u32,
        campaign: u32,
        at: Instants,
    ) -> Result<Slot, SlotError> {
        let row = u32::try_from(row).map_err(|_| SlotError::RowOutOfRange(row))?;
        debug_assert!(controller < MAX_INTERNED && detail < 64);
        Ok(Slot {
            key: key.0,
            t0: at.t0,
            t1: at.t1,
            t2: at.t2,
            row,
            meta: (table as u32) | (u32::from(detail & 63) << 2) | (controller << 8),
            campaign,
        })
    }

    pub(crate) fn key(&self) -> NumberKey {
        NumberKey(self.key)
    }

    pub(crate) fn table(&self) -> Table {
        Table::from_bits(self.meta)
    }

    pub(crate) fn row(&self) -> i64 {
        i64::from(self.row)
    }

    pub(crate) fn detail(&self) -> u8 {
        ((self.meta >> 2) & 63) as u8
    }

    pub(crate) fn controller(&self) -> u32 {
        self.meta >> 8
    }

    pub(crate) fn campaign(&self) -> u32 {
        self.campaign
    }

    /// The same record: the same row of the same table.
    fn same_record(&self, other: &Slot) -> bool {
        self.key == other.key && self.table() == other.table() && self.row == other.row
    }
}

/// Why a record cannot be indexed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("rowid {0} is beyond the index's range (2^32 rows per table)")]
    RowOutOfRange(i64),
    #[error("more than {MAX_INTERNED} distinct controllers and campaigns")]
    TooManyNames,
    #[error("more than 2^32 contact records")]
    TooManyRecords,
}

/// Names by id and ids by name.
type NameTable = (HashMap<Arc<str>, u32>, Vec<Arc<str>>);

/// Controllers and campaign ids as small integers; 0 is the empty string.
#[derive(Debug)]
pub(crate) struct Interner {
    inner: RwLock<NameTable>,
}

impl Default for Interner {
    fn default() -> Interner {
        let empty: Arc<str> = Arc::from("");
        Interner {
            inner: RwLock::new((HashMap::from([(Arc::clone(&empty), 0)]), vec![empty])),
        }
    }
}

impl Interner {
    pub(crate) fn intern(&self, name: &str) -> Result<u32, SlotError> {
        if let Some(id) = self.get(name) {
            return Ok(id);
        }
        let mut inner = self.inner.write().expect("interner lock");
        if let Some(id) = inner.0.get(name) {
            return Ok(*id);
        }
        let id = u32::try_from(inner.1.len())
            .ok()
            .filter(|id| *id < MAX_INTERNED)
            .ok_or(SlotError::TooManyNames)?;
        let name: Arc<str> = Arc::from(name);
        inner.0.insert(Arc::clone(&name), id);
        inner.1.push(name);
        Ok(id)
    }

    /// The id of a name already interned.
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.inner
            .read()
            .expect("interner lock")
            .0
            .get(name)
            .copied()
    }

    pub(crate) fn name(&self, id: u32) -> Arc<str> {
        let inner = self.inner.read().expect("interner lock");
        inner
            .1
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&inner.1[0]))
    }
}

/// Neighbouring buckets grouped in the first pass of [`Base::scatter`].
const GROUP_BUCKETS: usize = 4096;

/// Slots from which the index is built on two threads.
const PARALLEL_BUILD: usize = 1 << 20;

/// Every slot, grouped by bucket (top bits of a hash of the number).
#[derive(Debug, Default)]
struct Base {
    slots: Box<[Slot]>,
    /// `directory[b]..directory[b + 1]`: the slots of bucket `b`.
    directory: Box<[u32]>,
    bits: u32,
}

fn mix(key: u64) -> u64 {
    // The splitmix64 finaliser: nearby numbers land far apart.
    let mut h = key;
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Base {
    fn bucket(&self, key: u64) -> usize {
        (mix(key) >> (64 - self.bits)) as usize
    }

    /// Groups the slots of `parts` by bucket with a counting sort (linear
    /// time), then by number within each bucket; many slots in two halves
    /// of the buckets on two threads (each reads every slot and keeps its
    /// own buckets). The parts are read where they are: joining them first
    /// would copy every slot into memory the kernel must clear first.
    ///
    /// The sort goes by groups of [`GROUP_BUCKETS`] neighbouring buckets:
    /// first every slot to its group (few places written at a time, so the
    /// writes stay in the cache; one pass to a random place of the whole
    /// array missed the cache at every write at 50 M records), then each
    /// group, small enough for the cache, by bucket. Only the groups are
    /// counted beforehand; each group's buckets are counted when it is
    /// sorted (a pass counting every bucket first was a cache miss per
    /// slot).
    fn build(parts: Vec<Vec<Slot>>) -> Result<Base, SlotError> {
        let split = parts.iter().map(Vec::len).sum::<usize>() >= PARALLEL_BUILD;
        Base::build_split(parts, split)
    }

    /// [`Base::build`], on two threads when `split`.
    fn build_split(parts: Vec<Vec<Slot>>, split: bool) -> Result<Base, SlotError> {
        let total: usize = parts.iter().map(Vec::len).sum();
        let views: Vec<&[Slot]> = parts.iter().map(Vec::as_slice).collect();
        let (base, groups, half) = Base::counted(&views, total, split)?;
        let low_count = groups[..half].iter().sum::<usize>();
        let mut directory = vec![0u32; base.buckets() + 1];
        let mut sorted: Vec<Slot> = Vec::with_capacity(total);
        let kept = {
            let spare = &mut sorted.spare_capacity_mut()[..total];
            let (low_region, high_region) = spare.split_at_mut(low_count);
            let (low, high) = base.halves(&mut directory, &groups, half);
            let (base, views) = (&base, &views);
            std::thread::scope(|scope| {
                let high_kept = (!high.0.is_empty()).then(|| {
                    scope.spawn(move || base.place(views, half, high.0, high.1, high_region))
                });
                let low_kept = base.place(views, 0, low.0, low.1, low_region);
                let high_kept = high_kept.map_or(0, |h| h.join().expect("index build thread"));
                (low_kept, high_kept)
            })
        };
        // SAFETY: `place` wrote every position of both regions, which
        // together are the first `total` positions.
        unsafe { sorted.set_len(total) };
        drop(views);
        drop(parts);
        Ok(base.joined(sorted, directory, half * GROUP_BUCKETS, low_count, kept))
    }

    /// [`Base::build`] of the slots of one vector, in its own memory: for
    /// the first load, whose slots are every row of the store once (a
    /// second array of them, written once, would be as much fresh memory
    /// again, and the kernel clearing it was most of the build's time at
    /// 60 M records). The slots' order within a number follows (key, table,
    /// row), as in [`Base::build`]; copies of one record are merged the
    /// same way, in no particular order.
    fn build_in_place(slots: Vec<Slot>) -> Result<Base, SlotError> {
        let split = slots.len() >= PARALLEL_BUILD;
        Base::build_in_place_split(slots, split)
    }

    /// [`Base::build_in_place`], on two threads when `split`.
    fn build_in_place_split(mut slots: Vec<Slot>, split: bool) -> Result<Base, SlotError> {
        let total = slots.len();
        let (base, groups, half) = Base::counted(&[&slots], total, split)?;
        let low_count = groups[..half].iter().sum::<usize>();
        if half < groups.len() {
            base.partition(&mut slots, half, low_count);
        }
        let mut directory = vec![0u32; base.buckets() + 1];
        let kept = {
            let (low_region, high_region) = slots.split_at_mut(low_count);
            let (low, high) = base.halves(&mut directory, &groups, half);
            let base = &base;
            std::thread::scope(|scope| {
                let high_kept = (!high.0.is_empty()).then(|| {
                    scope.spawn(move || base.place_in_place(half, high.0, high.1, high_region))
                });
                let low_kept = base.place_in_place(0, low.0, low.1, low_region);
                let high_kept = high_kept.map_or(0, |h| h.join().expect("index build thread"));
                (low_kept, high_kept)
            })
        };
        Ok(base.joined(slots, directory, half * GROUP_BUCKETS, low_count, kept))
    }

    fn buckets(&self) -> usize {
        1 << self.bits
    }

    /// The groups of [`GROUP_BUCKETS`] buckets (fewer buckets: one group).
    fn groups(&self) -> usize {
        self.buckets().div_ceil(GROUP_BUCKETS)
    }

    /// An empty base sized for `total` slots, how many slots each of its
    /// groups holds, and the first group of the upper half (the second
    /// thread's; every group when not `split`). Counted on two threads,
    /// each reading half of every part.
    fn counted(
        parts: &[&[Slot]],
        total: usize,
        split: bool,
    ) -> Result<(Base, Vec<usize>, usize), SlotError> {
        let count = u32::try_from(total).map_err(|_| SlotError::TooManyRecords)?;
        // About four slots per bucket.
        let bits = (u64::from(count / 4).max(16).ilog2()).clamp(4, 30);
        let base = Base {
            slots: Box::default(),
            directory: Box::default(),
            bits,
        };
        let groups = base.groups();
        let split = split && groups >= 2;
        let count_half = |upper: bool| {
            let mut counts = vec![0usize; groups];
            for part in parts {
                let (low, high) = part.split_at(part.len() / 2);
                for slot in if upper { high } else { low } {
                    counts[base.group(slot)] += 1;
                }
            }
            counts
        };
        let (mut counts, upper) = if split {
            std::thread::scope(|scope| {
                let upper = scope.spawn(|| count_half(true));
                let lower = count_half(false);
                (lower, upper.join().expect("index count thread"))
            })
        } else {
            (count_half(false), count_half(true))
        };
        for (count, more) in counts.iter_mut().zip(upper) {
            *count += more;
        }
        let half = if split { groups / 2 } else { groups };
        Ok((base, counts, half))
    }

    /// The two halves' shares of the directory (their buckets) and of the
    /// group counts: groups `..half` and `half..`.
    #[allow(clippy::type_complexity)]
    fn halves<'d, 'g>(
        &self,
        directory: &'d mut [u32],
        groups: &'g [usize],
        half: usize,
    ) -> ((&'g [usize], &'d mut [u32]), (&'g [usize], &'d mut [u32])) {
        let buckets = self.buckets();
        let (low_dir, high_dir) =
            directory[..buckets].split_at_mut((half * GROUP_BUCKETS).min(buckets));
        let (low_groups, high_groups) = groups.split_at(half);
        ((low_groups, low_dir), (high_groups, high_dir))
    }

    /// The base of `sorted`, whose first `low_count` positions hold the
    /// lower half's buckets (`kept.0` of them kept, from the start) and
    /// the rest the upper half's (`kept.1` kept, from `low_count`), with
    /// `directory` as [`Base::place`] left it in each half, the upper
    /// half's from bucket `half`.
    fn joined(
        mut self,
        mut sorted: Vec<Slot>,
        mut directory: Vec<u32>,
        half: usize,
        low_count: usize,
        (low_kept, high_kept): (usize, usize),
    ) -> Base {
        let buckets = directory.len() - 1;
        // Copies merged in the low half leave a gap before the high one.
        if low_kept < low_count {
            sorted.copy_within(low_count..low_count + high_kept, low_kept);
        }
        for entry in &mut directory[half.min(buckets)..buckets] {
            *entry += low_kept as u32;
        }
        let kept = low_kept + high_kept;
        directory[buckets] = kept as u32;
        sorted.truncate(kept);
        self.slots = sorted.into_boxed_slice();
        self.directory = directory.into_boxed_slice();
        self
    }

    /// The group of [`GROUP_BUCKETS`] neighbouring buckets of a slot.
    fn group(&self, slot: &Slot) -> usize {
        self.bucket(slot.key) / GROUP_BUCKETS
    }

    /// Moves the slots of groups below `half` to the first `low_count`
    /// positions (how many there are), the others after them.
    fn partition(&self, slots: &mut [Slot], half: usize, low_count: usize) {
        let (mut low, mut high) = (0, low_count);
        loop {
            while low < low_count && self.group(&slots[low]) < half {
                low += 1;
            }
            while high < slots.len() && self.group(&slots[high]) >= half {
                high += 1;
            }
            // As many upper slots below `low_count` as lower ones above it.
            if low >= low_count || high >= slots.len() {
                break;
            }
            slots.swap(low, high);
            low += 1;
            high += 1;
        }
    }

    /// Writes the slots of groups `first..first + groups.len()` (each
    /// holding as many as `groups` says) into `region`, grouped by bucket,
    /// by number within each, copies of one record merged (see [`merge`])
    /// and the survivors moved down over the merged ones. Leaves in
    /// `directory` (the groups' buckets) where each bucket starts in
    /// `region`, and returns how many slots were kept.
    fn place(
        &self,
        parts: &[&[Slot]],
        first: usize,
        groups: &[usize],
        directory: &mut [u32],
        region: &mut [std::mem::MaybeUninit<Slot>],
    ) -> usize {
        let starts = group_starts(groups);
        self.scatter(parts, first, &starts, region);
        // SAFETY: the counts sized `region` for exactly these slots, so
        // `scatter` wrote each of its positions once; `MaybeUninit<Slot>`
        // has the layout of `Slot`.
        let region: &mut [Slot] = unsafe {
            &mut *(std::ptr::from_mut::<[std::mem::MaybeUninit<Slot>]>(region) as *mut [Slot])
        };
        self.spread(first, &starts, directory, region);
        sort_buckets(region, directory)
    }

    /// [`Base::place`] for slots already in `region` (exactly those of
    /// groups `first..first + groups.len()`, in any order).
    fn place_in_place(
        &self,
        first: usize,
        groups: &[usize],
        directory: &mut [u32],
        region: &mut [Slot],
    ) -> usize {
        let starts = group_starts(groups);
        self.permute(first, &starts, region);
        self.spread(first, &starts, directory, region);
        sort_buckets(region, directory)
    }

    /// The first pass of the grouping (stable): writes the slots of
    /// groups `first..` into `region`, each group from its start in
    /// `starts`, in their order in `parts`.
    fn scatter(
        &self,
        parts: &[&[Slot]],
        first: usize,
        starts: &[usize],
        region: &mut [std::mem::MaybeUninit<Slot>],
    ) {
        let groups = starts.len() - 1;
        let mut next = starts[..groups].to_vec();
        for slot in parts.iter().copied().flatten() {
            let g = self.group(slot).wrapping_sub(first);
            if g < groups {
                region[next[g]].write(*slot);
                next[g] += 1;
            }
        }
    }

    /// [`Base::scatter`] in place (an American flag sort of the groups):
    /// each slot out of its group's place is carried to the next free
    /// place of its own group, and what stood there is carried on, until a
    /// slot of the group the walk started from comes back. Every slot
    /// moves once; the writes go to as few places at a time as the
    /// scatter's. Not stable.
    fn permute(&self, first: usize, starts: &[usize], region: &mut [Slot]) {
        let groups = starts.len() - 1;
        let mut next = starts[..groups].to_vec();
        for g in 0..groups {
            while next[g] < starts[g + 1] {
                let mut carried = region[next[g]];
                let mut home = self.group(&carried).wrapping_sub(first);
                // The counts say a slot of group `home` still waits for
                // each place from `next[home]` to its end: the walk ends.
                while home != g {
                    std::mem::swap(&mut carried, &mut region[next[home]]);
                    next[home] += 1;
                    home = self.group(&carried).wrapping_sub(first);
                }
                region[next[g]] = carried;
                next[g] += 1;
            }
        }
    }

    /// The second pass of the grouping: counts each group's buckets (in
    /// `directory`, then where each starts in `region`) and orders the
    /// group by bucket through a buffer of one group, keeping the order
    /// within a bucket.
    fn spread(&self, first: usize, starts: &[usize], directory: &mut [u32], region: &mut [Slot]) {
        let first_bucket = first * GROUP_BUCKETS;
        let mut buffer: Vec<std::mem::MaybeUninit<Slot>> = Vec::new();
        let mut within = vec![0usize; GROUP_BUCKETS];
        for (g, counts) in directory.chunks_mut(GROUP_BUCKETS).enumerate() {
            let (start, end) = (starts[g], starts[g + 1]);
            let group_bucket = first_bucket + g * GROUP_BUCKETS;
            counts.fill(0);
            for slot in &region[start..end] {
                counts[self.bucket(slot.key) - group_bucket] += 1;
            }
            let mut at = 0usize;
            for (count, place) in counts.iter_mut().zip(within.iter_mut()) {
                *place = at;
                at += *count as usize;
                *count = (start + *place) as u32;
            }
            buffer.clear();
            buffer.resize(end - start, std::mem::MaybeUninit::uninit());
            for slot in &region[start..end] {
                let b = self.bucket(slot.key) - group_bucket;
                buffer[within[b]].write(*slot);
                within[b] += 1;
            }
            for (placed, buffered) in region[start..end].iter_mut().zip(&buffer) {
                // SAFETY: the group's counts sized the buffer for exactly
                // its slots: every position was written above.
                *placed = unsafe { buffered.assume_init() };
            }
        }
    }

    fn get(&self, key: NumberKey) -> &[Slot] {
        if self.slots.is_empty() {
            return &[];
        }
        let b = self.bucket(key.0);
        let bucket = &self.slots[self.directory[b] as usize..self.directory[b + 1] as usize];
        let start = bucket.partition_point(|s| s.key < key.0);
        let end = start + bucket[start..].partition_point(|s| s.key == key.0);
        &bucket[start..end]
    }
}

/// Where each group starts, given how many slots each holds (one entry
/// more, for the end).
fn group_starts(groups: &[usize]) -> Vec<usize> {
    let mut starts = Vec::with_capacity(groups.len() + 1);
    let mut at = 0;
    starts.push(at);
    for count in groups {
        at += count;
        starts.push(at);
    }
    starts
}

/// Sorts each bucket of `region` (starting where `directory` says) by
/// number, merges copies of one record (see [`merge`]) and moves the
/// survivors down over the merged ones. Leaves in `directory` where each
/// bucket now starts and returns how many slots were kept.
fn sort_buckets(region: &mut [Slot], directory: &mut [u32]) -> usize {
    let mut kept = 0usize;
    for b in 0..directory.len() {
        let end = directory.get(b + 1).map_or(region.len(), |e| *e as usize);
        let range = directory[b] as usize..end;
        directory[b] = kept as u32;
        region[range.clone()].sort_unstable_by_key(|s| (s.key, s.table(), s.row));
        for i in range {
            let slot = region[i];
            if kept > directory[b] as usize && region[kept - 1].same_record(&slot) {
                region[kept - 1] = merge(region[kept - 1], slot);
            } else {
                region[kept] = slot;
                kept += 1;
            }
        }
    }
    kept
}

/// A change to the records of one number.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change {
    Add(Slot),
    /// Ends the controller's consents (one purpose or all) at `at`.
    Revoke {
        controller: u32,
        purpose: Option<u8>,
        at: i64,
    },
    /// Forgets every record of the controller (`None`: of every controller).
    Erase {
        controller: Option<u32>,
    },
    /// Forgets one record (a rectification moves or rewrites it: the
    /// corrected copy follows as an [`Change::Add`]).
    Remove {
        table: Table,
        row: i64,
    },
}

impl Change {
    fn apply(&self, slots: &mut Vec<Slot>) {
        match *self {
            Change::Add(slot) => match slots.iter_mut().find(|s| s.same_record(&slot)) {
                Some(held) => *held = merge(*held, slot),
                None => slots.push(slot),
            },
            Change::Revoke {
                controller,
                purpose,
                at,
            } => {
                for slot in slots.iter_mut().filter(|s| {
                    s.table() == Table::Consent
                        && s.controller() == controller
                        && purpose.is_none_or(|p| p == s.detail() & crate::contacts::PURPOSE_BITS)
                }) {
                    // Only a consent not withdrawn yet: an earlier
                    // withdrawal arriving late must not replace a later one.
                    if slot.t1 == crate::contacts::OPEN {
                        slot.t1 = at;
                    }
                }
            }
            Change::Erase { controller } => {
                slots.retain(|s| controller.is_some_and(|c| c != s.controller()));
            }
            Change::Remove { table, row } => {
                slots.retain(|s| s.table() != table || s.row() != row);
            }
        }
    }
}

/// Hands the memory a build freed back to the system: the binary's
/// allocator (mimalloc) otherwise keeps it, and the resident size would
/// count the build's peak (about twice the base) instead of the base.
fn release_freed_memory() {
    // SAFETY: mi_collect only walks the allocator's own free lists; with
    // another global allocator it finds nothing to release.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Two copies of one record (one from the store, one from a change): the
/// copy that denies more wins, instant by instant. A consent or a
/// relationship ends at the earlier of its ends (a basis only ends
/// sooner); an opt-out expires at the later of its expiries (it only lasts
/// longer).
fn merge(a: Slot, b: Slot) -> Slot {
    match a.table() {
        Table::Suppression => Slot {
            t1: a.t1.max(b.t1),
            ..a
        },
        Table::Consent | Table::Relationship => Slot {
            t1: a.t1.min(b.t1),
            t2: a.t2.min(b.t2),
            ..a
        },
    }
}

type Changes = DashMap<NumberKey, Vec<Change>, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Layers {
    base: Arc<Base>,
    frozen: Arc<Changes>,
    active: Arc<Changes>,
}

/// The compact index: see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct CompactIndex {
    pub(crate) names: Interner,
    layers: ArcSwap<Layers>,
    /// Held (shared) while pushing a change, (exclusive) while freezing.
    gate: RwLock<()>,
    /// One compaction at a time.
    compacting: Mutex<()>,
}

impl CompactIndex {
    /// An index of `slots` (any order, duplicates merged).
    #[cfg(test)]
    pub(crate) fn with_slots(slots: Vec<Slot>) -> Result<CompactIndex, SlotError> {
        let index = CompactIndex::default();
        index.layers.store(Arc::new(Layers {
            base: Arc::new(Base::build(vec![slots])?),
            ..Layers::default()
        }));
        Ok(index)
    }

    /// The records of a number, with every change applied.
    pub(crate) fn slots(&self, key: NumberKey) -> Vec<Slot> {
        let layers = self.layers.load();
        let mut slots = layers.base.get(key).to_vec();
        for layer in [&layers.frozen, &layers.active] {
            if let Some(changes) = layer.get(&key) {
                for change in changes.iter() {
                    change.apply(&mut slots);
                }
            }
        }
        slots
    }

    /// Makes a change visible to every lookup that starts after it returns.
    pub(crate) fn change(&self, key: NumberKey, change: Change) {
        let _gate = self.gate.read().expect("index gate");
        self.layers
            .load()
            .active
            .entry(key)
            .or_default()
            .push(change);
    }

    /// Forgets the pending additions of `slots` that the base now holds
    /// as they are (a large refresh's records, pending while it merged
    /// them): each is its number's first change, so applying it again would
    /// change nothing. The numbers left without changes leave the layer,
    /// which then does not grow into another compaction.
    pub(crate) fn forget_merged_additions(&self, slots: &[Slot]) {
        let _gate = self.gate.read().expect("index gate");
        let layers = self.layers.load();
        for slot in slots {
            let key = slot.key();
            let emptied = match layers.active.get_mut(&key) {
                Some(mut changes) => {
                    if matches!(changes.first(), Some(Change::Add(first)) if first == slot)
                        && layers.base.get(key).contains(slot)
                    {
                        changes.remove(0);
                    }
                    changes.is_empty()
                }
                None => false,
            };
            if emptied {
                layers
                    .active
                    .remove_if(&key, |_, changes| changes.is_empty());
            }
        }
    }

    /// Records in the base, numbers with pending changes.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let layers = self.layers.load();
        (
            layers.base.slots.len(),
            layers.frozen.len() + layers.active.len(),
        )
    }

    /// Returns once no compaction started before the call is running.
    pub(crate) fn wait_for_compaction(&self) {
        drop(self.compacting.lock().expect("compaction lock"));
    }

    /// Starts a compaction (one at a time): see [`Compaction`].
    pub(crate) fn begin_compaction(&self) -> Compaction<'_> {
        Compaction {
            index: self,
            _one: self.compacting.lock().expect("compaction lock"),
            frozen: None,
        }
    }

    /// Merges the pending changes into a new base.
    pub(crate) fn compact(&self) -> Result<(), SlotError> {
        self.compact_with(Vec::new())
    }

    /// Merges the pending changes, then the slots of `added`, into a new
    /// base: for an index nobody else changes meanwhile (at load).
    pub(crate) fn compact_with(&self, added: Vec<Slot>) -> Result<(), SlotError> {
        let mut compaction = self.begin_compaction();
        compaction.freeze();
        compaction.finish(added)
    }
}

/// A compaction: [`Compaction::freeze`] ends the changes it merges (the
/// caller freezes at the instant its `added` records were read, so that
/// they are newer than every frozen change and older than every later
/// one), [`Compaction::finish`] merges and swaps the new base in. Lookups
/// go on meanwhile; changes made meanwhile stay pending.
pub(crate) struct Compaction<'a> {
    index: &'a CompactIndex,
    _one: std::sync::MutexGuard<'a, ()>,
    frozen: Option<Arc<Changes>>,
}

impl Compaction<'_> {
    pub(crate) fn freeze(&mut self) {
        let _gate = self.index.gate.write().expect("index gate");
        let current = self.index.layers.load_full();
        let frozen = Arc::clone(&current.active);
        // A compaction that failed left its frozen changes in force: they
        // come first.
        for entry in current.frozen.iter() {
            let mut changes = entry.value().clone();
            if let Some(later) = frozen.get(entry.key()) {
                changes.extend(later.iter().copied());
            }
            frozen.insert(*entry.key(), changes);
        }
        self.index.layers.store(Arc::new(Layers {
            base: Arc::clone(&current.base),
            frozen: Arc::clone(&frozen),
            active: Arc::new(Changes::default()),
        }));
        self.frozen = Some(frozen);
    }

    /// Builds the base of the old one, the frozen changes and the slots of
    /// `added`.
    pub(crate) fn finish(self, added: Vec<Slot>) -> Result<(), SlotError> {
        let frozen = self.frozen.clone().unwrap_or_default();
        let base = Arc::clone(&self.index.layers.load().base);
        if base.slots.is_empty() && frozen.is_empty() {
            // The first load: built in the memory of `added`.
            return self.swap_in(Base::build_in_place(added)?);
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(base.slots.len());
        slots.extend(
            base.slots
                .iter()
                .filter(|s| !frozen.contains_key(&s.key()))
                .copied(),
        );
        for entry in frozen.iter() {
            let mut merged = base.get(*entry.key()).to_vec();
            for change in entry.value() {
                change.apply(&mut merged);
            }
            slots.extend(merged);
        }
        drop(base);
        // The kept slots first, `added` after them: where a record comes
        // twice, `merge` keeps the first copy's fields, as a pending
        // `Change::Add` of the same record would.
        self.swap_in(Base::build(vec![slots, added])?)
    }

    fn swap_in(self, base: Base) -> Result<(), SlotError> {
        let base = Arc::new(base);
        self.index.layers.rcu(|current| Layers {
            base: Arc::clone(&base),
            frozen: Arc::new(Changes::default()),
            active: Arc::clone(&current.active),
        });
        release_freed_memory();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> NumberKey {
        NumberKey::from_e164(&format!("+39333{i:07}")).unwrap()
    }

    fn consent(i: u64, row: i64, controller: u32) -> Slot {
        Slot::new(
            key(i),
            Table::Consent,
            row,
            0,
            controller,
            0,
            Instants {
                t0: 100,
                t1: OPEN,
                t2: OPEN,
            },
        )
        .unwrap()
    }

    #[test]
    fn test_two_threads_build_the_index_one_builds() {
        // Copies of one record (merged), several records per number, and
        // enough buckets for both halves to hold some.
        let slots: Vec<Slot> = (0..40_000u64)
            .flat_map(|i| {
                let copy = Slot {
                    t1: 50 + i as i64,
                    ..consent(i % 9_000, (i % 9_000) as i64, 1)
                };
                [
                    consent(i % 9_000, (i % 9_000) as i64, 1),
                    copy,
                    consent(i, 100_000 + i as i64, 2),
                ]
            })
            .collect();
        let one = Base::build_split(vec![slots.clone()], false).unwrap();
        // The same slots in three parts.
        let parts = vec![
            slots[..1_000].to_vec(),
            slots[1_000..50_000].to_vec(),
            slots[50_000..].to_vec(),
        ];
        let two = Base::build_split(parts, true).unwrap();
        // And in the memory of the slots themselves (the first load's
        // build), on one thread and on two, from the slots reversed.
        let reversed: Vec<Slot> = slots.iter().rev().copied().collect();
        let in_place = Base::build_in_place_split(slots.clone(), false).unwrap();
        let in_place_two = Base::build_in_place_split(reversed, true).unwrap();
        assert_eq!(one.slots.len(), 9_000 + 40_000);
        for other in [&two, &in_place, &in_place_two] {
            assert_eq!(one.bits, other.bits);
            assert_eq!(one.directory, other.directory);
            assert!(
                one.slots
                    .iter()
                    .zip(other.slots.iter())
                    .all(|(a, b)| a == b)
            );
        }
        // The copies were merged: the earliest end kept.
        assert_eq!(
            two.get(key(0))
                .iter()
                .filter(|s| s.row == 0)
                .map(|s| s.t1)
                .collect::<Vec<_>>(),
            vec![50]
        );
    }

    #[test]
    fn test_the_build_puts_every_record_once_in_its_bucket_in_order() {
        // 220,000 slots: 2^15 buckets, four groups of the first pass on
        // each of the two threads; every tenth record comes twice.
        let slots: Vec<Slot> = (0..200_000u64)
            .flat_map(|i| {
                let slot = consent(i * 7 % 150_000, i as i64, 1);
                if i % 10 == 0 {
                    vec![slot, slot]
                } else {
                    vec![slot]
                }
            })
            .collect();
        let mut expected: Vec<(u64, Table, u32)> =
            slots.iter().map(|s| (s.key, s.table(), s.row)).collect();
        expected.sort_unstable();
        expected.dedup();
        let parts = vec![slots[..70_000].to_vec(), slots[70_000..].to_vec()];
        for base in [
            Base::build_split(parts, true).unwrap(),
            Base::build_in_place_split(slots, true).unwrap(),
        ] {
            every_record_once_in_its_bucket_in_order(&base, &expected);
        }
    }

    fn every_record_once_in_its_bucket_in_order(base: &Base, expected: &[(u64, Table, u32)]) {
        assert!(base.directory.len() > 8 * GROUP_BUCKETS);
        let bucket_of = |s: &Slot| base.bucket(s.key);
        for b in 0..base.directory.len() - 1 {
            let bucket = &base.slots[base.directory[b] as usize..base.directory[b + 1] as usize];
            assert!(bucket.iter().all(|s| bucket_of(s) == b), "bucket {b}");
            assert!(
                bucket.windows(2).all(
                    |w| (w[0].key, w[0].table(), w[0].row) < (w[1].key, w[1].table(), w[1].row)
                ),
                "bucket {b} in order, copies merged"
            );
        }
        let mut found: Vec<(u64, Table, u32)> = base
            .slots
            .iter()
            .map(|s| (s.key, s.table(), s.row))
            .collect();
        found.sort_unstable();
        assert_eq!(found, expected);
    }

    #[test]
    fn test_slots_are_44_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 44);
    }

    #[test]
    fn test_every_record_is_found_under_its_number_only() {
        let slots: Vec<Slot> = (0..10_000)
            .flat_map(|i| [consent(i, i as i64 * 2, 1), consent(i, i as i64 * 2 + 1, 2)])
            .collect();
        let index = CompactIndex::with_slots(slots).unwrap();
        for i in (0..10_000).step_by(97) {
            let found = index.slots(key(i));
            assert_eq!(found.len(), 2, "{i}");
            assert!(found.iter().all(|s| s.key() == key(i)));
        }
        assert!(index.slots(key(20_000)).is_empty());
    }

    #[test]
    fn test_changes_apply_before_and_after_compaction() {
        let index = CompactIndex::with_slots(vec![consent(1, 1, 1), consent(2, 2, 1)]).unwrap();
        index.change(
            key(1),
            Change::Revoke {
                controller: 1,
                purpose: None,
                at: 150,
            },
        );
        index.change(key(2), Change::Erase { controller: None });
        index.change(key(3), Change::Add(consent(3, 3, 1)));
        let check = |index: &CompactIndex| {
            assert_eq!({ index.slots(key(1))[0].t1 }, 150);
            assert!(index.slots(key(2)).is_empty());
            assert_eq!(index.slots(key(3)).len(), 1);
        };
        check(&index);
        let mut compaction = index.begin_compaction();
        compaction.freeze();
        compaction.finish(vec![consent(4, 4, 1)]).unwrap();
        check(&index);
        assert_eq!(index.slots(key(4)).len(), 1);
        assert_eq!(index.sizes(), (3, 0));
    }

    /// A record loaded twice (written here, then read back by a refresh)
    /// keeps the earlier end: a revocation is never undone by a reload.
    #[test]
    fn test_duplicate_records_keep_the_earliest_end() {
        let mut revoked = consent(1, 1, 1);
        revoked.t1 = 120;
        let index = CompactIndex::with_slots(vec![revoked]).unwrap();
        index.change(key(1), Change::Add(consent(1, 1, 1)));
        assert_eq!({ index.slots(key(1))[0].t1 }, 120);
        let mut compaction = index.begin_compaction();
        compaction.freeze();
        compaction.finish(vec![consent(1, 1, 1)]).unwrap();
        let slots = index.slots(key(1));
        assert_eq!((slots.len(), { slots[0].t1 }), (1, 120));
    }

    /// A compaction that failed after freezing left its frozen changes in
    /// the layers; the next freeze dropped them (an erasure undone).
    #[test]
    fn test_a_failed_compaction_keeps_its_frozen_changes() {
        let index = CompactIndex::with_slots(vec![consent(1, 1, 1), consent(2, 2, 1)]).unwrap();
        index.change(key(1), Change::Erase { controller: None });
        {
            let mut failed = index.begin_compaction();
            failed.freeze();
            // Dropped without finishing, as when the build fails.
        }
        index.change(key(2), Change::Erase { controller: None });
        assert!(index.slots(key(1)).is_empty());
        index.compact().unwrap();
        assert!(index.slots(key(1)).is_empty(), "the first erasure kept");
        assert!(index.slots(key(2)).is_empty());
        assert_eq!(index.sizes(), (0, 0));
    }

    /// Copies of one opt-out merge to the longer-lasting one: the rule
    /// that shortens a consent must not shorten an opt-out.
    #[test]
    fn test_copies_of_an_opt_out_keep_the_later_expiry() {
        let opt_out = |expires: i64| {
            Slot::new(
                key(1),
                Table::Suppression,
                1,
                0,
                0,
                0,
                Instants {
                    t0: 100,
                    t1: expires,
                    t2: OPEN,
                },
            )
            .unwrap()
        };
        let index = CompactIndex::with_slots(vec![opt_out(OPEN)]).unwrap();
        index.change(key(1), Change::Add(opt_out(200)));
        assert_eq!({ index.slots(key(1))[0].t1 }, OPEN);
        index.compact().unwrap();
        assert_eq!({ index.slots(key(1))[0].t1 }, OPEN);
    }

    #[test]
    fn test_erasure_of_one_controller_keeps_the_others() {
        let index = CompactIndex::with_slots(vec![consent(1, 1, 1), consent(1, 2, 2)]).unwrap();
        index.change(
            key(1),
            Change::Erase {
                controller: Some(1),
            },
        );
        let slots = index.slots(key(1));
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].controller(), 2);
    }
}
