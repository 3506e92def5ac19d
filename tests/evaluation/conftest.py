"""Fixtures of the evaluation tests: one local SQLite MLflow store shared by the session (creating one is slow)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory) -> str:
    """A local MLflow tracking URI; tests keep apart by using their own experiment names."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"
