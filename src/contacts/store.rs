//! SQLite persistence of contact records, with the in-memory index kept in
//! step: every change is committed first, then applied to the index.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::{Consent, ContactIndex, Suppression};
use crate::model::Purpose;
use crate::number::NumberKey;

/// A storage failure (the change was not made).
#[derive(Debug, thiserror::Error)]
#[error("contact store: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// Durable contact records plus their in-memory index.
#[derive(Debug)]
pub struct ContactStore {
    conn: Mutex<Connection>,
    index: ContactIndex,
}

/// The contact database under `data_dir`.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("contacts.db")
}

fn purpose_from_str(text: &str) -> Purpose {
    Purpose::from_config(text).unwrap_or(Purpose::Marketing)
}

fn ts(us: i64) -> Timestamp {
    crate::decision_log::from_micros(us)
}

impl ContactStore {
    /// Opens (creating if needed) the contact database in `data_dir` and loads the index.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be opened or read.
    pub fn open(data_dir: &Path) -> Result<ContactStore, StoreError> {
        let _ = std::fs::create_dir_all(data_dir);
        let conn = Connection::open(database_path(data_dir))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS consents (
                consent_id TEXT PRIMARY KEY,
                controller TEXT NOT NULL,
                number TEXT NOT NULL,
                number_key INTEGER NOT NULL,
                purpose TEXT NOT NULL,
                granted_at_us INTEGER NOT NULL,
                revoked_at_us INTEGER,
                source TEXT NOT NULL,
                evidence_ref TEXT NOT NULL,
                recorded_at_us INTEGER NOT NULL
            ) STRICT;
            CREATE INDEX IF NOT EXISTS consents_by_number ON consents (number_key);
            CREATE TABLE IF NOT EXISTS suppressions (
                suppression_id TEXT PRIMARY KEY,
                controller TEXT NOT NULL,
                number TEXT NOT NULL,
                number_key INTEGER NOT NULL,
                reason TEXT NOT NULL,
                source TEXT NOT NULL,
                created_at_us INTEGER NOT NULL
            ) STRICT;
            CREATE INDEX IF NOT EXISTS suppressions_by_number ON suppressions (number_key);",
        )?;
        let index = ContactIndex::default();
        {
            let mut statement = conn.prepare(
                "SELECT consent_id, controller, number, number_key, purpose, granted_at_us, revoked_at_us,
                        source, evidence_ref, recorded_at_us FROM consents",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    NumberKey(row.get::<_, i64>(3)? as u64),
                    Consent {
                        consent_id: row.get(0)?,
                        controller: row.get(1)?,
                        number: row.get(2)?,
                        purpose: purpose_from_str(&row.get::<_, String>(4)?),
                        granted_at: ts(row.get(5)?),
                        revoked_at: row.get::<_, Option<i64>>(6)?.map(ts),
                        source: row.get(7)?,
                        evidence_ref: row.get(8)?,
                        recorded_at: ts(row.get(9)?),
                    },
                ))
            })?;
            for row in rows {
                let (key, consent) = row?;
                index.put_consent(key, consent);
            }
            let mut statement = conn.prepare(
                "SELECT suppression_id, controller, number, number_key, reason, source, created_at_us FROM suppressions",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    NumberKey(row.get::<_, i64>(3)? as u64),
                    Suppression {
                        suppression_id: row.get(0)?,
                        controller: row.get(1)?,
                        number: row.get(2)?,
                        reason: row.get(4)?,
                        source: row.get(5)?,
                        created_at: ts(row.get(6)?),
                    },
                ))
            })?;
            for row in rows {
                let (key, suppression) = row?;
                index.put_suppression(key, suppression);
            }
        }
        Ok(ContactStore {
            conn: Mutex::new(conn),
            index,
        })
    }

    /// The in-memory index the decision path reads.
    pub fn index(&self) -> &ContactIndex {
        &self.index
    }

    /// Stores a consent, then makes it effective.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn record_consent(&self, key: NumberKey, consent: Consent) -> Result<(), StoreError> {
        self.conn.lock().expect("contact db lock").execute(
            "INSERT INTO consents (consent_id, controller, number, number_key, purpose, granted_at_us,
                revoked_at_us, source, evidence_ref, recorded_at_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                consent.consent_id,
                consent.controller,
                consent.number,
                key.0 as i64,
                consent.purpose.as_str(),
                consent.granted_at.as_microsecond(),
                consent.revoked_at.map(|t| t.as_microsecond()),
                consent.source,
                consent.evidence_ref,
                consent.recorded_at.as_microsecond(),
            ],
        )?;
        self.index.put_consent(key, consent);
        Ok(())
    }

    /// Ends the controller's consents for the number (one purpose, or all
    /// when `purpose` is `None`) at `at`; returns how many it ended.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn revoke_consents(
        &self,
        key: NumberKey,
        controller: &str,
        purpose: Option<Purpose>,
        at: Timestamp,
    ) -> Result<u32, StoreError> {
        let changed = self.conn.lock().expect("contact db lock").execute(
            "UPDATE consents SET revoked_at_us = ?1
             WHERE number_key = ?2 AND controller = ?3 AND (?4 IS NULL OR purpose = ?4)
               AND (revoked_at_us IS NULL OR revoked_at_us > ?1)",
            params![
                at.as_microsecond(),
                key.0 as i64,
                controller,
                purpose.map(Purpose::as_str)
            ],
        )?;
        self.index.revoke(key, controller, purpose, at);
        Ok(changed as u32)
    }

    /// Stores an opt-out, then makes it effective.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is changed then.
    pub fn add_suppression(
        &self,
        key: NumberKey,
        suppression: Suppression,
    ) -> Result<(), StoreError> {
        self.conn.lock().expect("contact db lock").execute(
            "INSERT INTO suppressions (suppression_id, controller, number, number_key, reason, source, created_at_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                suppression.suppression_id,
                suppression.controller,
                suppression.number,
                key.0 as i64,
                suppression.reason,
                suppression.source,
                suppression.created_at.as_microsecond(),
            ],
        )?;
        self.index.put_suppression(key, suppression);
        Ok(())
    }
}
