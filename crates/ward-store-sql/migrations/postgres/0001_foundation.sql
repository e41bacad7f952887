-- Ward foundation schema (PostgreSQL). Times are Unix milliseconds; booleans are 0/1 integers; hashes are hex.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    sites TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    must_change_password BIGINT NOT NULL,
    totp_secret BYTEA,
    totp_enabled BIGINT NOT NULL,
    totp_last_step BIGINT NOT NULL,
    recovery_codes TEXT NOT NULL,
    break_glass BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    source TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    last_used_ms BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id, created_ms);

CREATE TABLE sites (
    slug TEXT PRIMARY KEY,
    parent TEXT REFERENCES sites(slug),
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    source TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_entries_actor ON audit_entries(actor, seq);
CREATE INDEX audit_entries_action ON audit_entries(action, seq);
CREATE INDEX audit_entries_target ON audit_entries(target, seq);

CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    head_hash TEXT NOT NULL,
    frontier BYTEA NOT NULL
);
INSERT INTO audit_head (id, size, head_hash, frontier)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', '\x'::bytea);

CREATE TABLE audit_checkpoints (
    tree_size BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    signature BYTEA NOT NULL
);
