"""The decision core (pure): an alert, the policies and the time in; a plan, a refusal or no
match out, with its escalation. It runs nothing: remediation/ does."""
