"""`ablate`: the command line. A table of verbs; each lives in `ablations/commands/<verb>.py`
with `add_arguments(parser)` and `run(args) -> int`, imported only when used so that
`ablate validate` does not pay for importing Ray.

Exit codes: 0 success, 2 bad input (a message, no traceback), 1 failure.
`main(argv)` returns the code, so tests call it in-process.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# verb -> (module under ablations.commands, one-line help)
VERBS = {
    "train": ("train", "one pre-train -> fine-tune run, no tracking server needed"),
    "validate": ("validate", "check a study or search file without running anything"),
    "run": ("run", "run a grid study on Ray Tune, tracked in MLflow"),
    "search": ("search", "run an Optuna hyperparameter search"),
    "report": ("report", "build the Plotly dashboard of a study"),
    "estimate": ("estimate", "trials, pre-trainings, FLOPs and wall time a study will cost"),
    "list": ("list_studies", "studies and their trials' states"),
    "findings": ("findings", "our verdict on each of the paper's findings, per study"),
    "ui": ("ui", "start the MLflow UI on this work directory's store"),
    "server": ("server", "an MLflow tracking server (database + proxied artifacts) for a cluster's workers"),
    "data": ("data", "look at the data (ablate data show TASK)"),
    "import-m3ae": ("import_m3ae", "convert an official M3AE checkpoint (.ckpt) to this project's format"),
}


class UsageError(Exception):
    """Bad input from the user: exit code 2, message only."""


def default_workdir() -> Path:
    return Path(os.environ.get("ABLATE_HOME", "ablate-runs"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ablate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module_name, help_text) in VERBS.items():
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        sub.add_argument("--workdir", type=Path, default=None,
                         help="where runs, the MLflow store and caches live (default ./ablate-runs or $ABLATE_HOME)")
        sub.set_defaults(_module=module_name)
        _command(module_name).add_arguments(sub)
    return parser


def _command(module_name: str):
    return importlib.import_module(f"ablations.commands.{module_name}")


def _is_usage_error(error: BaseException) -> bool:
    from m3ae.config import ConfigError

    usage_types: tuple[type, ...] = (UsageError, ConfigError, FileNotFoundError)
    try:
        from ablations.lock import StudyLocked
        from ablations.paths import UnsafePath
        from ablations.spec import SpecError

        usage_types += (SpecError, StudyLocked, UnsafePath)  # refused before anything ran
    except ImportError:
        pass
    return isinstance(error, usage_types)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0)
    args.workdir = (args.workdir or default_workdir()).expanduser().absolute()
    from ablations.console import quiet_libraries

    quiet_libraries(args.debug)
    try:
        return int(_command(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("ablate: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI turns every error into an exit code
        if args.debug:
            raise
        from ablations.redact import redact_text  # an error may quote a URI with its password

        if _is_usage_error(error):
            print(f"ablate {args.verb}: {redact_text(error)}", file=sys.stderr)
            return 2
        print(f"ablate {args.verb}: failed: {type(error).__name__}: {redact_text(error)}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 1


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
