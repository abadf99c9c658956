-- Remediation runs as the guards admitted them: what rate limits and breakers are re-seeded
-- from when their state is lost (a restart, an empty Redis).
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    target TEXT NOT NULL,
    limit_keys TEXT NOT NULL,
    breaker_key TEXT NOT NULL,
    breaker_failures INTEGER NOT NULL,
    breaker_window REAL NOT NULL,
    breaker_cooldown REAL NOT NULL,
    admitted_at TEXT NOT NULL,
    finished_at TEXT,
    succeeded INTEGER
);
CREATE INDEX runs_by_admitted_at ON runs (admitted_at);

-- What changed the guards' state, and who: breaker transitions, pause and resume.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);

-- The kill switch: one row while paused. Durable, so a restart never resumes by itself.
CREATE TABLE pause (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    reason TEXT NOT NULL,
    paused_by TEXT NOT NULL,
    paused_at TEXT NOT NULL
);
