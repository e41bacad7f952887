-- Remote actions: durable commands and their states (sqlite).
ALTER TABLE enroll_tokens ADD COLUMN allow_full_wipe INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN allow_full_wipe INTEGER NOT NULL DEFAULT 0;

CREATE TABLE commands (
    -- Delivery order.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL REFERENCES devices(id),
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    not_after_ms INTEGER NOT NULL,
    signature TEXT NOT NULL,
    state TEXT NOT NULL,
    batch_id TEXT,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    acked_ms INTEGER,
    finished_ms INTEGER,
    detail TEXT NOT NULL,
    proof TEXT,
    proof_signature TEXT,
    output TEXT
);
CREATE INDEX commands_device ON commands(device_id, state, seq);
CREATE INDEX commands_state ON commands(state, not_after_ms);
CREATE INDEX commands_batch ON commands(batch_id);
