-- Incidents: declared breaches, their containment and their reports (postgres).
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    description TEXT NOT NULL,
    situation TEXT NOT NULL,
    discovered_ms BIGINT NOT NULL,
    aware_ms BIGINT NOT NULL,
    scope TEXT NOT NULL,
    plan_name TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    declared_by TEXT NOT NULL,
    declared_by_user TEXT NOT NULL,
    approved_by TEXT,
    approved_ms BIGINT,
    clinician TEXT,
    contain_ms BIGINT,
    lifted_ms BIGINT,
    closed_ms BIGINT,
    report TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX incidents_created ON incidents(created_ms);
