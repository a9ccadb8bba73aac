-- The replicas that ever used this database (audit and checkpoints cover them all).
CREATE TABLE replicas (
    replica_id text PRIMARY KEY,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);
