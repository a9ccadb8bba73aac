//! The rows of a scan read through SQLite's C interface: each value's
//! type is checked as rusqlite's getters check it (an integer column must
//! hold an integer, a text column text), without the checks rusqlite adds
//! to every call (the column count, the conversion traits). A start-up
//! reads tens of millions of rows of eight columns; rusqlite's part of
//! each read was about a tenth of the load's CPU.

use std::ffi::c_int;
use std::marker::PhantomData;
use std::ptr::NonNull;

use rusqlite::types::Type;
use rusqlite::{Connection, ffi};

/// A prepared statement over a range of rowids (`?1 < rowid <= ?2`),
/// finalized when dropped.
pub(super) struct RawRows<'c> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: *mut ffi::sqlite3,
    /// The statement's columns: an index beyond them is an error (SQLite
    /// would answer NULL, which an optional getter reads as "none").
    columns: c_int,
    /// Stepped to its end or failed: never stepped again (SQLite would
    /// start it over).
    finished: bool,
    _conn: PhantomData<&'c Connection>,
}

/// The current row of a [`RawRows`]: what it reads is valid until the
/// next step.
pub(super) struct RawRow<'s> {
    stmt: *mut ffi::sqlite3_stmt,
    columns: c_int,
    _rows: PhantomData<&'s mut ()>,
}

impl<'c> RawRows<'c> {
    /// Prepares `sql` on `conn` with `after` and `upto` bound to `?1` and
    /// `?2`.
    pub(super) fn prepare(
        conn: &'c Connection,
        sql: &str,
        after: i64,
        upto: i64,
    ) -> rusqlite::Result<RawRows<'c>> {
        let length = c_int::try_from(sql.len()).map_err(|_| rusqlite::Error::InvalidQuery)?;
        // SAFETY: the handle is `conn`'s, alive and used on this thread
        // only while `conn` is borrowed (`RawRows` holds the borrow).
        let db = unsafe { conn.handle() };
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `sql` is valid for `length` bytes; `stmt` receives the
        // statement (null for an empty one, refused below).
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db,
                sql.as_ptr().cast(),
                length,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(failure(db, rc));
        }
        let stmt = NonNull::new(stmt).ok_or(rusqlite::Error::InvalidQuery)?;
        // SAFETY: a live statement.
        let columns = unsafe { ffi::sqlite3_column_count(stmt.as_ptr()) };
        let rows = RawRows {
            stmt,
            db,
            columns,
            finished: false,
            _conn: PhantomData,
        };
        for (index, value) in [(1, after), (2, upto)] {
            // SAFETY: a live statement; binding an integer copies it.
            let rc = unsafe { ffi::sqlite3_bind_int64(rows.stmt.as_ptr(), index, value) };
            if rc != ffi::SQLITE_OK {
                return Err(failure(db, rc));
            }
        }
        Ok(rows)
    }

    /// The next row, `None` after the last.
    pub(super) fn next(&mut self) -> rusqlite::Result<Option<RawRow<'_>>> {
        // SAFETY: a live statement, stepped on the thread that borrows
        // its connection.
        if self.finished {
            return Ok(None);
        }
        match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(Some(RawRow {
                stmt: self.stmt.as_ptr(),
                columns: self.columns,
                _rows: PhantomData,
            })),
            ffi::SQLITE_DONE => {
                self.finished = true;
                Ok(None)
            }
            rc => {
                self.finished = true;
                Err(failure(self.db, rc))
            }
        }
    }
}

impl Drop for RawRows<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, here; nothing reads it after.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

impl RawRow<'_> {
    fn kind(&self, index: c_int) -> rusqlite::Result<c_int> {
        if !(0..self.columns).contains(&index) {
            return Err(rusqlite::Error::InvalidColumnIndex(index as usize));
        }
        // SAFETY: a statement positioned on a row, a column it has.
        Ok(unsafe { ffi::sqlite3_column_type(self.stmt, index) })
    }

    /// An integer column (NULL or any other type is an error).
    pub(super) fn int(&self, index: c_int) -> rusqlite::Result<i64> {
        match self.kind(index)? {
            // SAFETY: as in `kind`; the value is an integer.
            ffi::SQLITE_INTEGER => Ok(unsafe { ffi::sqlite3_column_int64(self.stmt, index) }),
            other => Err(wrong_type(index, other)),
        }
    }

    /// An integer column that may be NULL.
    pub(super) fn optional_int(&self, index: c_int) -> rusqlite::Result<Option<i64>> {
        match self.kind(index)? {
            ffi::SQLITE_NULL => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    /// A text column's bytes (UTF-8 is for the caller to check).
    pub(super) fn text(&self, index: c_int) -> rusqlite::Result<&[u8]> {
        match self.kind(index)? {
            ffi::SQLITE_TEXT => self.bytes(index, |stmt, index| {
                // SAFETY: as in `kind`.
                unsafe { ffi::sqlite3_column_text(stmt, index) }
            }),
            other => Err(wrong_type(index, other)),
        }
    }

    /// A blob column that may be NULL.
    pub(super) fn optional_blob(&self, index: c_int) -> rusqlite::Result<Option<&[u8]>> {
        match self.kind(index)? {
            ffi::SQLITE_NULL => Ok(None),
            ffi::SQLITE_BLOB => self
                .bytes(index, |stmt, index| {
                    // SAFETY: as in `kind`.
                    unsafe { ffi::sqlite3_column_blob(stmt, index) }.cast()
                })
                .map(Some),
            other => Err(wrong_type(index, other)),
        }
    }

    /// The value's bytes, by `pointer` (called first, then the length, as
    /// SQLite asks).
    fn bytes(
        &self,
        index: c_int,
        pointer: impl FnOnce(*mut ffi::sqlite3_stmt, c_int) -> *const u8,
    ) -> rusqlite::Result<&[u8]> {
        let data = pointer(self.stmt, index);
        // SAFETY: as in `kind`.
        let length = unsafe { ffi::sqlite3_column_bytes(self.stmt, index) };
        let length = usize::try_from(length).unwrap_or(0);
        if data.is_null() {
            return match length {
                0 => Ok(&[]),
                // Out of memory converting the value.
                _ => Err(rusqlite::Error::SqliteFailure(
                    ffi::Error::new(ffi::SQLITE_NOMEM),
                    None,
                )),
            };
        }
        // SAFETY: SQLite keeps the value's `length` bytes at `data` until
        // the statement steps again, which needs the `&mut RawRows` this
        // row borrows.
        Ok(unsafe { std::slice::from_raw_parts(data, length) })
    }
}

/// rusqlite's error for a value of another type than the column's.
fn wrong_type(index: c_int, kind: c_int) -> rusqlite::Error {
    let kind = match kind {
        ffi::SQLITE_INTEGER => Type::Integer,
        ffi::SQLITE_FLOAT => Type::Real,
        ffi::SQLITE_TEXT => Type::Text,
        ffi::SQLITE_BLOB => Type::Blob,
        _ => Type::Null,
    };
    rusqlite::Error::InvalidColumnType(index as usize, format!("column {index}"), kind)
}

/// The connection's error for a failed call.
fn failure(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: a live connection; the message is copied at once.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db);
        (!text.is_null()).then(|| {
            std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned()
        })
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_values_are_read_by_type_and_a_wrong_type_is_an_error() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (i, t, b);
             INSERT INTO t VALUES (7, 'seven', x'0102');
             INSERT INTO t VALUES (NULL, '', NULL);
             INSERT INTO t VALUES ('8', 8, 'text');
             INSERT INTO t VALUES (1.5, x'00', 9);",
        )
        .unwrap();
        let mut rows = RawRows::prepare(
            &conn,
            "SELECT i, t, b FROM t WHERE rowid > ?1 AND rowid <= ?2",
            0,
            3,
        )
        .unwrap();
        let row = rows.next().unwrap().unwrap();
        assert_eq!(row.int(0).unwrap(), 7);
        assert_eq!(row.optional_int(0).unwrap(), Some(7));
        assert_eq!(row.text(1).unwrap(), b"seven");
        assert_eq!(row.optional_blob(2).unwrap(), Some(&[1u8, 2][..]));
        let row = rows.next().unwrap().unwrap();
        assert!(row.int(0).is_err(), "NULL is not an integer");
        assert_eq!(row.optional_int(0).unwrap(), None);
        assert_eq!(row.text(1).unwrap(), b"");
        assert_eq!(row.optional_blob(2).unwrap(), None);
        // Text where an integer belongs, an integer where text does, text
        // where a blob does: errors, never converted.
        let row = rows.next().unwrap().unwrap();
        assert!(row.int(0).is_err());
        assert!(row.optional_int(0).is_err());
        assert!(row.text(1).is_err());
        assert!(row.optional_blob(2).is_err());
        // The range ends at rowid 3.
        assert!(rows.next().unwrap().is_none());
        let mut rows = RawRows::prepare(
            &conn,
            "SELECT i, t, b FROM t WHERE rowid > ?1 AND rowid <= ?2",
            3,
            4,
        )
        .unwrap();
        let row = rows.next().unwrap().unwrap();
        assert!(row.int(0).is_err(), "a real is not an integer");
        assert!(row.text(1).is_err(), "a blob is not text");
        assert!(row.optional_blob(2).is_err());
        // A column the statement does not have is an error, even for a
        // getter that reads NULL as "none".
        assert!(row.optional_int(3).is_err());
        assert!(row.optional_blob(3).is_err());
        assert!(row.optional_int(-1).is_err());
        assert!(rows.next().unwrap().is_none());
        assert!(rows.next().unwrap().is_none(), "not started over");
        assert!(RawRows::prepare(&conn, "SELECT nothing FROM nowhere", 0, 1).is_err());
    }
}
