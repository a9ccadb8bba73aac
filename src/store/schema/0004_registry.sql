-- Registry snapshots published for every replica (`dialgate registry import`
-- on any machine; each replica follows `registry_current`).
--
-- The snapshot file's bytes are kept as ordered bytea chunks of at most
-- 1 MiB, not as large objects: plain rows are removed with their version
-- (ON DELETE CASCADE, no orphaned large objects to lo_unlink), travel with
-- pg_dump, streaming and logical replication like every other table, obey
-- ordinary table privileges, and are written and read one chunk at a time
-- (never the 1 GB bytea limit, never a whole snapshot in one message).
CREATE TABLE registry_versions (
    registry_id text NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    sha256 bytea NOT NULL CHECK (length(sha256) = 32),
    size_bytes bigint NOT NULL CHECK (size_bytes > 0),
    chunk_count integer NOT NULL CHECK (chunk_count > 0),
    numbers bigint NOT NULL CHECK (numbers >= 0),
    published_by text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    -- Set only by an import run with --allow-shrink: replicas then install
    -- it even when it shrinks the snapshot they serve by more than
    -- max_shrink_percent (the import's threshold).
    allow_shrink boolean NOT NULL DEFAULT false,
    max_shrink_percent smallint NOT NULL DEFAULT 10
        CHECK (max_shrink_percent BETWEEN 0 AND 100),
    PRIMARY KEY (registry_id, version)
);

CREATE TABLE registry_chunks (
    registry_id text NOT NULL,
    version bigint NOT NULL,
    seq integer NOT NULL CHECK (seq >= 0),
    data bytea NOT NULL,
    PRIMARY KEY (registry_id, version, seq),
    FOREIGN KEY (registry_id, version)
        REFERENCES registry_versions (registry_id, version) ON DELETE CASCADE
);
-- Snapshots are already compact (roaring bitmaps): no compression attempt.
ALTER TABLE registry_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- The version every replica serves, one row per registry.
CREATE TABLE registry_current (
    registry_id text PRIMARY KEY,
    version bigint NOT NULL,
    -- True only for a deliberate rollback (set by hand, see
    -- docs/replicas-registry.md): replicas never install a version older
    -- than the one they serve unless it is set. Every publication clears it.
    rollback boolean NOT NULL DEFAULT false,
    FOREIGN KEY (registry_id, version) REFERENCES registry_versions (registry_id, version)
);
