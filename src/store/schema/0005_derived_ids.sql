-- How bulk imports derive the ids of records a file gives none
-- (src/contacts/derived_ids.rs): 'salted' with the shared subject salt for a
-- salt made by this version; NULL (unsalted, as before) for one made before,
-- whose records hold unsalted ids. Every replica derives them alike.
ALTER TABLE contact_salt ADD COLUMN derived_ids text CHECK (derived_ids = 'salted');
