"""`policies replay`: stored alerts (or a file of webhook payloads) run again through a policy
set with a simulated clock, and two policy sets compared. Nothing here acts, sends or writes:
it imports no action, channel or runner (a contract in .importlinter says so)."""
