"""Action implementations: each name in the policy catalogue, run against a real system."""
