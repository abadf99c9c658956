-- The blast radii a run counted in (its target among the distinct targets its policy, and all
-- policies together, changed in a window): what the guards are re-seeded from.
ALTER TABLE runs ADD COLUMN reach_keys json NOT NULL DEFAULT '[]';
