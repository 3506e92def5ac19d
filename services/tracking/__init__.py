"""MLflow tracking, the project's only MLflow importer: store, run, queries, registry, redaction, outage outbox; the
store's and registry's input checks."""
