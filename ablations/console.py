"""What the libraries may print on a user's terminal: warnings and errors, not their chatter.

MLflow announces its database migrations ("Creating initial MLflow database tables...",
"Updating database tables") through alembic and its own logger, and Ray warns about its token
authentication and logs its start-up and Tune's bookkeeping at INFO. A user who ran `ablate run`
asked for none of it; `ablate --debug ...` shows all of it again.
"""

from __future__ import annotations

import logging
import os

DEBUG_ENV = "ABLATE_DEBUG"
# Loggers that speak at INFO about things a user cannot act on.
CHATTY = ("mlflow.store.db.utils", "mlflow.store.db", "alembic", "alembic.runtime.migration", "ray.tune",
          "ray.train", "ray.data")


def debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def quiet_libraries(debugging: bool | None = None) -> None:
    """Raise the chatty libraries' loggers to WARNING, unless debugging (`--debug` sets ABLATE_DEBUG,
    which Ray workers inherit through the environment)."""
    if debugging:
        os.environ[DEBUG_ENV] = "1"
    if debugging or (debugging is None and debug()):
        return
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)


def ray_init_options() -> dict:
    """Keyword arguments for ray.init: Ray's own logger at ERROR (its token-authentication WARNING and
    INFO start-up lines go), unless debugging."""
    return {} if debug() else {"logging_level": logging.ERROR, "log_to_driver": True}


def quiet_optuna() -> None:
    """Optuna logs every study it creates and every trial it is told at INFO, through a handler of its
    own that it resets on import: lower it once optuna is imported (a search prints its own lines)."""
    if debug():
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
