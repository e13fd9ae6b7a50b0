"""Database URLs given on the command line (`ablate search --storage`, `ablate server
--backend-store-uri`): their SQLAlchemy driver must be installed before anything starts.

    check_driver("postgresql://user@host/db", "--storage")   # no psycopg2: UsageError naming the package

Without this, Optuna says only "Failed to import DB access module" after the study was set up.
"""

from __future__ import annotations

from ablate_common.redact import redact_uri
from ablations.cli import UsageError

# the module SQLAlchemy imports for a driver -> the pip package that provides it
PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]", "pg8000": "pg8000", "asyncpg": "asyncpg",
            "pymysql": "PyMySQL", "MySQLdb": "mysqlclient", "mysql.connector": "mysql-connector-python"}


def check_driver(url: str, flag: str) -> None:
    """Raise UsageError when `url` is not a SQLAlchemy URL, or its driver is not installed."""
    if url.startswith("sqlite"):  # part of Python
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise UsageError(f"{flag} {redact_uri(url)}: not a database URL SQLAlchemy knows ({error}); expected e.g. "
                         "sqlite:////abs/path.db or postgresql://user:password@host:5432/db") from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        module = getattr(error, "name", None) or str(error)
        how = f"pip install '{PACKAGES.get(module, module)}'"
        if module == "psycopg2":
            how += " (or pip install 'm3ae-ablate[postgres]')"
        elif module == "psycopg":  # SQLAlchemy 2.1's default for postgresql://
            how += " (SQLAlchemy's default PostgreSQL driver), or write postgresql+psycopg2:// and pip install " \
                   "'m3ae-ablate[postgres]'"
        raise UsageError(f"{flag} {redact_uri(url)}: its database driver {module!r} is not installed: {how}") \
            from None
