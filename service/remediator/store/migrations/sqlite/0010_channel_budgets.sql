-- Channel budgets (notify/budget.py). A message past its channel's budget is folded: done
-- unsent (`failed_at`, with `folded_at`), until the fold's summary, when it is sent, takes it
-- in (`folded_into`, the summary's id) and lists it.
ALTER TABLE outbox ADD COLUMN folded_at TEXT;
ALTER TABLE outbox ADD COLUMN folded_into TEXT;
CREATE INDEX outbox_folding ON outbox (channel) WHERE folded_at IS NOT NULL AND folded_into IS NULL;
CREATE INDEX outbox_by_fold ON outbox (folded_into) WHERE folded_into IS NOT NULL;
-- A channel's budget of N messages per window is N slots: a send takes a slot last used a
-- window ago or earlier, so no window holds more than N, across every replica. Slots N to 2N-1
-- are the P1 reserve: a P1 page past the budget, the first of its alertname in the window.
CREATE TABLE channel_slots (
    channel TEXT NOT NULL,
    slot INTEGER NOT NULL,
    used_at TEXT NOT NULL,
    PRIMARY KEY (channel, slot)
);
-- When each alertname last had a P1 page past a channel's budget.
CREATE TABLE budget_firsts (
    channel TEXT NOT NULL,
    alertname TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (channel, alertname)
);
