"""MLflow tracking, the project's only MLflow importer: `run` writes one run from plain dicts, `queries` reads runs
back as plain dicts, `registry` keeps model versions, `redaction` makes configs safe to log, `outbox` holds what
an outage kept back, `store` finds the store and tells an outage from a refusal."""
