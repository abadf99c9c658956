"""Policy files: the schema, matchers, templates, loading and the parameter catalogue."""
