-- The shared incident a remediation escalates under, when not its policy's and target's own
-- (every alert one blast radius held back in one window; also in `plan`): a column of its own,
-- so that the incident's resolve can ask, by index, whether any of its alerts is still firing.
ALTER TABLE remediations ADD COLUMN incident text;
UPDATE remediations SET incident = plan->>'incident' WHERE guard = 'blast_radius';
CREATE INDEX remediations_by_incident ON remediations (incident) WHERE incident IS NOT NULL;
