"""Remediation runs: the dispatcher claims alert events, the runner takes each to its end."""
