-- Shared contact records (issue 16 item 1): an ordered journal of every
-- change, which each replica applies to its own store and index in seq order.
--
-- seq is assigned under the advisory lock 'contacts' (pg_advisory_xact_lock),
-- as MAX(seq) + 1, and the lock is held until commit: seq order is commit
-- order, so a follower reading seq > applied never skips a late commit.
CREATE TABLE contact_journal (
    seq bigint PRIMARY KEY,
    -- The entry's records in contact_journal_records (written before the
    -- lock is taken: a large import holds it only for the last statements).
    batch bigint NOT NULL UNIQUE,
    replica_id text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    -- records | import | erase
    kind text NOT NULL,
    -- What applying needs besides the records (never a number).
    body jsonb NOT NULL,
    -- false: the entry can only grant (consents not withdrawn): a replica
    -- still applying it decides no call wrongly allowed, so it stays fresh
    -- (a large consent import does not stall checks).
    restrictive boolean NOT NULL,
    -- A random value per entry: a replica keeps the one of the entry it
    -- applied last and checks on every poll that the entry at that seq is
    -- still the same (a restore or failover that lost entries and numbered
    -- new ones the same way is noticed, never silently skipped).
    token bigint NOT NULL DEFAULT ((random() * 9e18)::bigint)
);

CREATE SEQUENCE contact_journal_batches;

-- The personal data of each entry, one row per record, keyed by the salted
-- hash of the number, so an erasure can find and remove it.
CREATE TABLE contact_journal_records (
    batch bigint NOT NULL,
    pos integer NOT NULL,
    -- consent | suppression | suppression_hashed | relationship | revoke
    kind text NOT NULL,
    record_id text NOT NULL,
    -- Hex salted hash of the number (the shared salt below).
    subject text NOT NULL,
    controller text NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (batch, pos)
);
CREATE INDEX contact_journal_records_by_subject ON contact_journal_records (subject);
CREATE INDEX contact_journal_records_by_id ON contact_journal_records (kind, record_id);

-- The one subject salt every replica's store uses (erased subjects' opt-outs
-- are kept by salted hash: every replica must compute the same hash).
CREATE TABLE contact_salt (
    id integer PRIMARY KEY CHECK (id = 1),
    salt bytea NOT NULL CHECK (length(salt) = 32)
);
