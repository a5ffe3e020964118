"""pytest-alembic's standard checks: one head, upgrade to head, every step up and down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_alembic import Config as PytestAlembicConfig
from pytest_alembic.tests import (  # noqa: F401 - collected as tests here
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL, Engine

from batchflag_db.migrate import alembic_config as batchflag_alembic_config


@pytest.fixture
def alembic_config(db_url: URL) -> PytestAlembicConfig:
    return PytestAlembicConfig.from_raw_config(batchflag_alembic_config(db_url))


@pytest.fixture
def alembic_engine(db_url: URL) -> Iterator[Engine]:
    engine = create_engine(db_url, poolclass=pool.NullPool)
    yield engine
    engine.dispose()
