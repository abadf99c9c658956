-- A policy's verified fixes by target, newest first: is a firing alert a fix that did not last?
CREATE INDEX remediations_fixed ON remediations (policy, target, finished_at DESC)
    WHERE outcome = 'succeeded';
