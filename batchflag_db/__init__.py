"""batchflag-db: at most one current batch, enforced by MySQL/MariaDB itself."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from batchflag_db.errors import (
    BatchFlagError,
    BatchNotFoundError,
    ConfigurationError,
    DatabaseConnectionError,
    InvalidBatchIdError,
    SchemaNotReadyError,
    TransactionConflictError,
)
from batchflag_db.flag import (
    Flip,
    RetryPolicy,
    current_batch,
    get_current_batch,
    set_current_batch,
    unset_current_batch,
)

try:
    __version__ = version("batchflag-db")
except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "BatchFlagError",
    "BatchNotFoundError",
    "ConfigurationError",
    "DatabaseConnectionError",
    "Flip",
    "InvalidBatchIdError",
    "RetryPolicy",
    "SchemaNotReadyError",
    "TransactionConflictError",
    "__version__",
    "current_batch",
    "get_current_batch",
    "set_current_batch",
    "unset_current_batch",
]
