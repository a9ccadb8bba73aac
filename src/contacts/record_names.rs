//! The names contact records carry, by role (every record's controller;
//! the controllers of the records that bind, opt-outs and withdrawals; the
//! opt-outs' campaign ids): what a configuration must spell as the records
//! do, checked at start and when records are written.

/// Interned names records carry, by role: every record's controller; the
/// controllers whose records bind (opt-outs, withdrawals); opt-outs'
/// campaign ids.
#[derive(Debug, Default, Clone)]
pub(crate) struct RecordNames {
    pub(super) controllers: Vec<u32>,
    pub(super) binding: Vec<u32>,
    pub(super) campaigns: Vec<u32>,
}

impl RecordNames {
    fn add(names: &mut Vec<u32>, id: u32) {
        if id != 0 && !names.contains(&id) {
            names.push(id);
        }
    }

    /// Notes a record's controller (few distinct: a scan checks each
    /// row's against the few it has met).
    pub(crate) fn note(&mut self, controller: u32) {
        Self::add(&mut self.controllers, controller);
    }

    /// Notes the controller of an opt-out or a withdrawal, and an
    /// opt-out's campaign (0: none).
    pub(crate) fn note_binding(&mut self, controller: u32, campaign: u32) {
        Self::add(&mut self.controllers, controller);
        Self::add(&mut self.binding, controller);
        Self::add(&mut self.campaigns, campaign);
    }

    pub(super) fn merge(&mut self, other: &RecordNames) {
        for &id in &other.controllers {
            Self::add(&mut self.controllers, id);
        }
        for &id in &other.binding {
            Self::add(&mut self.binding, id);
        }
        for &id in &other.campaigns {
            Self::add(&mut self.campaigns, id);
        }
    }
}

/// The names records carry, by role, as text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredNames {
    /// Every record's controller.
    pub controllers: Vec<String>,
    /// The controllers of opt-outs and withdrawals (erased subjects'
    /// opt-outs included): respelled, they would bind nothing.
    pub binding: Vec<String>,
    /// The campaign ids of opt-outs.
    pub campaigns: Vec<String>,
}
