-- The decision log shared by every replica: one hash chain per replica,
-- rows keyed (replica_id, seq). Attempt caps count the ALLOW rows and
-- idempotency finds a request id's first decision here, both under the
-- transaction-scoped advisory locks dialgate_lock_keys takes.
CREATE TABLE decisions (
    replica_id text NOT NULL,
    seq bigint NOT NULL,
    decision_id text NOT NULL,
    decided_at_us bigint NOT NULL,
    request_id text NOT NULL,
    campaign_id text NOT NULL,
    controller text NOT NULL,
    called_number text NOT NULL,
    normalized_number text NOT NULL,
    caller_id text NOT NULL,
    verdict text NOT NULL,
    reasons text NOT NULL,
    next_allowed_at_us bigint,
    data_versions text NOT NULL,
    latency_us bigint NOT NULL,
    api_key text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (replica_id, seq)
);
CREATE INDEX decisions_by_request ON decisions (request_id, decided_at_us) WHERE request_id <> '';
CREATE INDEX decisions_allowed ON decisions (controller, normalized_number, decided_at_us) WHERE verdict = 'ALLOW';
CREATE INDEX decisions_by_time ON decisions (decided_at_us);

-- Where `audit purge` cut each replica's chain: the last removed row.
CREATE TABLE decision_purges (
    replica_id text PRIMARY KEY,
    through_seq bigint NOT NULL,
    through_hash text NOT NULL
);

-- Checkpoints over every replica's head (JSON, signed when a key is configured).
CREATE TABLE decision_checkpoints (
    id bigserial PRIMARY KEY,
    written_by text NOT NULL,
    checkpoint text NOT NULL
);

-- Takes the transaction-scoped advisory locks of `keys` in the order given
-- (the caller sorts them: two batches never wait for each other in a cycle).
CREATE FUNCTION dialgate_lock_keys(keys bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    FOREACH k IN ARRAY keys LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;

-- How far back each replica needs the log at its last start (the longest
-- attempt-cap window, the idempotency window, the record-keeping floor),
-- in microseconds: `audit purge` keeps what any replica still needs; and
-- its longest attempt-cap window (copying a SQLite log in is refused while
-- replicas have ALLOWs inside it).
ALTER TABLE replicas ADD COLUMN keep_decisions_us bigint, ADD COLUMN cap_window_us bigint;
