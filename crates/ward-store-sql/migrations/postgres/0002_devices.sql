-- Enrollment tokens, devices and the history of their facts (PostgreSQL).
CREATE TABLE enroll_tokens (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    site TEXT NOT NULL REFERENCES sites(slug),
    class TEXT NOT NULL,
    criticality TEXT NOT NULL,
    phi BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL,
    revoked_ms BIGINT
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    class TEXT NOT NULL,
    criticality TEXT NOT NULL,
    phi BIGINT NOT NULL,
    hostname TEXT NOT NULL,
    state TEXT NOT NULL,
    cert_fingerprint TEXT NOT NULL,
    cert_not_after_ms BIGINT NOT NULL,
    enroll_token_id TEXT NOT NULL,
    enrolled_ms BIGINT NOT NULL,
    last_seen_ms BIGINT,
    facts TEXT NOT NULL,
    facts_updated_ms BIGINT
);
CREATE INDEX devices_site ON devices(site, hostname);

CREATE TABLE device_facts_history (
    device_id TEXT NOT NULL REFERENCES devices(id),
    time_ms BIGINT NOT NULL,
    change TEXT NOT NULL
);
CREATE INDEX device_facts_history_device ON device_facts_history(device_id, time_ms);
