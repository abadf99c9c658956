"""Escalation: messages to people through PagerDuty, Slack and email, by the severity matrix."""
