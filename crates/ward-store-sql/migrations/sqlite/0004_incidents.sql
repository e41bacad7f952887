-- Incidents: declared breaches, their containment and their reports (sqlite).
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    description TEXT NOT NULL,
    situation TEXT NOT NULL,
    discovered_ms INTEGER NOT NULL,
    aware_ms INTEGER NOT NULL,
    scope TEXT NOT NULL,
    plan_name TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    declared_by TEXT NOT NULL,
    declared_by_user TEXT NOT NULL,
    approved_by TEXT,
    approved_ms INTEGER,
    clinician TEXT,
    contain_ms INTEGER,
    lifted_ms INTEGER,
    closed_ms INTEGER,
    report TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX incidents_created ON incidents(created_ms);
