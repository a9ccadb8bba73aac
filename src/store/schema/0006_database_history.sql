-- The history of the shared database the replicas decide on (see
-- src/store/database_epoch.rs): the cluster's system identifier (when the
-- role may read it) and the timeline. Written by the first replica that
-- connects and by `dialgate store accept-database`; copied to standbys
-- with everything else, so that after a failover or a restore every
-- replica, a new one too, finds it differs from the database it is on.
CREATE TABLE database_history (
    id integer PRIMARY KEY CHECK (id = 1),
    system_identifier bigint,
    timeline integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by text NOT NULL
);
-- A decision's verdict is ALLOW or DENY: a row altered to anything else
-- would count against no cap (the replicas count verdict = 'ALLOW').
ALTER TABLE decisions ADD CONSTRAINT decisions_verdict CHECK (verdict IN ('ALLOW', 'DENY'));
