-- Policies as code: every applied version, compliance results, remediations, settings sent and
-- dynamic groups (sqlite).
CREATE TABLE policy_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    spec TEXT NOT NULL,
    removed INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE compliance_results (
    device_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    check_id TEXT NOT NULL,
    status TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    evaluated_ms INTEGER NOT NULL,
    policy_version INTEGER NOT NULL,
    PRIMARY KEY (device_id, policy, check_id)
);

CREATE TABLE policy_remediations (
    device_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    failing_since_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    command_id TEXT,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, policy, failing_since_ms)
);

CREATE TABLE device_settings (
    device_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    command_id TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE device_groups (
    name TEXT PRIMARY KEY,
    selector TEXT NOT NULL,
    description TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
