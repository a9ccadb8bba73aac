//! The ids a bulk import gives records whose file line has none
//! (`consent_id` or `suppression_id` left empty): derived from the
//! record's content, so that running the same file again finds the same
//! ids and stores nothing twice.
//!
//! A store made by this version derives them **salted** with its subject
//! salt (the one every replica of a PostgreSQL deployment shares), 96 bits
//! in URL-safe base64 (`csv-` and 16 characters): an id read from the
//! erasure ledger, an opt-out kept by hash after an erasure, or an error
//! message does not give the number away to whoever tries candidates
//! without the store. A store made before keeps **unsalted** ids (`csv-`
//! and 32 hex digits of SHA-256): salting them there would give the same
//! lines other ids, and a re-run would store every record again. Which
//! one a store uses is in its `meta` table (`derived_ids`), and on the
//! PostgreSQL backend in `contact_salt.derived_ids`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// How a store derives ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// SHA-256 of the fields alone (stores made before the salted ids).
    Unsalted,
    /// SHA-256 of the store's subject salt and the fields.
    Salted,
}

impl Scheme {
    /// The value stored for [`Scheme::Salted`] (`meta.derived_ids`,
    /// `contact_salt.derived_ids`); no value is [`Scheme::Unsalted`].
    pub const SALTED: &'static str = "salted";

    /// The scheme of a new store.
    pub const NEW: Scheme = Scheme::Salted;

    /// The stored value (`None` for [`Scheme::Unsalted`]).
    #[must_use]
    pub fn stored(self) -> Option<&'static str> {
        match self {
            Scheme::Unsalted => None,
            Scheme::Salted => Some(Self::SALTED),
        }
    }

    /// Reads a stored value.
    ///
    /// # Errors
    /// A value this version does not know (another version's scheme: its
    /// ids cannot be derived here), quoted.
    pub fn from_stored(value: Option<&[u8]>) -> Result<Scheme, String> {
        match value {
            None => Ok(Scheme::Unsalted),
            Some(value) if value == Self::SALTED.as_bytes() => Ok(Scheme::Salted),
            Some(value) => Err(format!(
                "{:?}",
                String::from_utf8_lossy(&value[..value.len().min(32)])
            )),
        }
    }
}

/// A store's way of deriving ids, with its salt.
#[derive(Clone, PartialEq, Eq)]
pub struct DerivedIds {
    scheme: Scheme,
    salt: [u8; 32],
}

impl std::fmt::Debug for DerivedIds {
    // The salt is a secret of the store: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedIds")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// Bytes hashed before the salt: these ids are not any other salted hash
/// of the store (the subject hashes).
const DOMAIN: &[u8] = b"dialgate derived record id\0";

impl DerivedIds {
    #[must_use]
    pub fn new(scheme: Scheme, salt: [u8; 32]) -> DerivedIds {
        DerivedIds { scheme, salt }
    }

    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The id of the record whose content is `parts` (in a fixed order,
    /// none holding U+001F), with `prefix` before it.
    #[must_use]
    pub fn id(&self, prefix: &str, parts: &[&str]) -> String {
        let mut hasher = Sha256::new();
        if self.scheme == Scheme::Salted {
            hasher.update(DOMAIN);
            hasher.update(self.salt);
        }
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                hasher.update("\u{1f}");
            }
            hasher.update(part);
        }
        let digest = hasher.finalize();
        match self.scheme {
            Scheme::Unsalted => format!("{prefix}-{}", super::to_hex(&digest[..16])),
            Scheme::Salted => format!(
                "{prefix}-{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unsalted_ids_are_the_ones_stores_made_before_hold() {
        // The value earlier versions derived (SHA-256 of the fields joined
        // by U+001F, 16 bytes in hex), whatever the salt.
        let parts = ["acme", "+393331234567", "", "", "crm", ""];
        let joined = parts.join("\u{1f}");
        let expected = format!(
            "csv-{}",
            super::super::to_hex(&Sha256::digest(joined.as_bytes())[..16])
        );
        for salt in [[0; 32], [9; 32]] {
            assert_eq!(
                DerivedIds::new(Scheme::Unsalted, salt).id("csv", &parts),
                expected
            );
        }
    }

    #[test]
    fn test_salted_ids_depend_on_the_salt_and_every_field() {
        let parts = ["acme", "+393331234567", "", "", "crm", ""];
        let one = DerivedIds::new(Scheme::Salted, [1; 32]);
        let id = one.id("csv", &parts);
        assert_eq!(id.len(), "csv-".len() + 16, "{id}");
        assert!(id.starts_with("csv-"), "{id}");
        assert!(!id.contains("393331234567"), "{id}");
        assert_eq!(one.id("csv", &parts), id, "the same content, the same id");
        assert_ne!(
            DerivedIds::new(Scheme::Salted, [2; 32]).id("csv", &parts),
            id
        );
        assert_ne!(
            DerivedIds::new(Scheme::Unsalted, [1; 32]).id("csv", &parts),
            id
        );
        for i in 0..parts.len() {
            let mut other = parts;
            other[i] = "x";
            assert_ne!(one.id("csv", &other), id, "field {i}");
        }
        // Fields do not run into each other.
        assert_ne!(one.id("csv", &["ab", "c"]), one.id("csv", &["a", "bc"]));
    }

    #[test]
    fn test_a_stored_scheme_is_read_back_and_an_unknown_one_refused() {
        for scheme in [Scheme::Unsalted, Scheme::Salted] {
            let stored = scheme.stored().map(str::as_bytes);
            assert_eq!(Scheme::from_stored(stored), Ok(scheme));
        }
        let err = Scheme::from_stored(Some(b"peppered")).unwrap_err();
        assert!(err.contains("peppered"), "{err}");
    }
}
