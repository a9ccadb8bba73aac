//! Rows of a staged import packed in one buffer per batch: the values of
//! every row, in the order the staging statement binds them, their texts
//! side by side in one byte buffer.
//!
//! A bulk import's reading thread packs the records it validated, in
//! number order; the storing thread binds them from there. Handed over as
//! records, each of their strings was a separate allocation that the
//! storing thread touched first (another core's cache) and then freed:
//! that, not SQLite, bounded a staged import (`memmove` in
//! `sqlite3_bind_text64` took a third of the storing thread's samples,
//! freeing the strings another eighth; docs/performance.md, "Eleventh
//! round"). Packed, the storing thread reads the batch front to back and
//! frees two buffers.

/// One value of a packed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packed {
    Null,
    Int(i64),
    /// The bytes of [`PackedRows`]' buffer from the first to the second.
    Text(usize, usize),
}

/// Rows of `width` values each.
#[derive(Debug)]
pub(crate) struct PackedRows {
    width: usize,
    values: Vec<Packed>,
    bytes: Vec<u8>,
}

impl PackedRows {
    /// Room for `rows` rows of `width` values, and `bytes` of text.
    pub(crate) fn with_capacity(width: usize, rows: usize, bytes: usize) -> Self {
        PackedRows {
            width,
            values: Vec::with_capacity(width * rows),
            bytes: Vec::with_capacity(bytes),
        }
    }

    pub(crate) fn text(&mut self, text: &str) {
        self.raw(text.as_bytes());
    }

    /// Bytes that are not UTF-8 text (read back with [`PackedRows::bytes`]).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.values.push(Packed::Text(start, self.bytes.len()));
    }

    pub(crate) fn int(&mut self, value: i64) {
        self.values.push(Packed::Int(value));
    }

    pub(crate) fn optional(&mut self, value: Option<i64>) {
        self.values.push(value.map_or(Packed::Null, Packed::Int));
    }

    pub(crate) fn null(&mut self) {
        self.values.push(Packed::Null);
    }

    /// Whole rows packed (a row being packed is not counted).
    pub(crate) fn len(&self) -> usize {
        self.values.len() / self.width
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per row.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// Every whole row, in the order packed.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &[Packed]> {
        self.values.chunks_exact(self.width)
    }

    /// The bytes of a text value (empty for any other).
    pub(crate) fn bytes(&self, value: Packed) -> &[u8] {
        match value {
            Packed::Text(start, end) => &self.bytes[start..end],
            Packed::Null | Packed::Int(_) => &[],
        }
    }

    /// A text value packed with [`PackedRows::text`] (see
    /// [`PackedRows::bytes`]); `None` for bytes packed raw that are not
    /// UTF-8.
    pub(crate) fn str(&self, value: Packed) -> Option<&str> {
        std::str::from_utf8(self.bytes(value)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rows_give_back_what_was_packed() {
        let mut rows = PackedRows::with_capacity(3, 2, 16);
        rows.text("a-1");
        rows.int(-7);
        rows.optional(None);
        rows.text("");
        rows.optional(Some(9));
        rows.raw(b"{\"x\":1}");
        assert_eq!(rows.len(), 2);
        let all: Vec<&[Packed]> = rows.rows().collect();
        assert_eq!(rows.str(all[0][0]), Some("a-1"));
        assert_eq!(all[0][1], Packed::Int(-7));
        assert_eq!(all[0][2], Packed::Null);
        assert_eq!(rows.str(all[1][0]), Some(""));
        assert_eq!(all[1][1], Packed::Int(9));
        assert_eq!(rows.bytes(all[1][2]), b"{\"x\":1}");
        assert_eq!(rows.bytes(Packed::Int(1)), b"");
        assert!(!rows.is_empty());
    }

    #[test]
    fn test_a_row_being_packed_is_not_counted() {
        let mut rows = PackedRows::with_capacity(2, 1, 0);
        rows.int(1);
        assert_eq!(rows.len(), 0);
        rows.null();
        assert_eq!(rows.len(), 1);
    }
}
