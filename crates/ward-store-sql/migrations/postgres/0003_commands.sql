-- Remote actions: durable commands and their states (postgres).
ALTER TABLE enroll_tokens ADD COLUMN allow_full_wipe BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN allow_full_wipe BIGINT NOT NULL DEFAULT 0;

CREATE TABLE commands (
    -- Delivery order.
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL REFERENCES devices(id),
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    not_after_ms BIGINT NOT NULL,
    signature TEXT NOT NULL,
    state TEXT NOT NULL,
    batch_id TEXT,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    sent_ms BIGINT,
    acked_ms BIGINT,
    finished_ms BIGINT,
    detail TEXT NOT NULL,
    proof TEXT,
    proof_signature TEXT,
    output TEXT
);
CREATE INDEX commands_device ON commands(device_id, state, seq);
CREATE INDEX commands_state ON commands(state, not_after_ms);
CREATE INDEX commands_batch ON commands(batch_id);
