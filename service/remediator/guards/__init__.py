"""Guard rails: kill switch, dry-run, target leases, rate limits, breakers, a concurrency cap."""
