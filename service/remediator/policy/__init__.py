"""Policy files: the schema, matchers, templates, loading and the action catalogue."""
