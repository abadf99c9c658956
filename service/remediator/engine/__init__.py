"""The decision core (pure) and, later, the runs it plans."""
