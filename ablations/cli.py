"""`ablate`: the command line. A table of verbs; each lives in `ablations/commands/<verb>.py`
with `add_arguments(parser)` and `run(args) -> int`, imported only when used so that
`ablate validate` does not pay for importing Ray.

Exit codes: 0 success, 2 bad input (a message, no traceback), 1 failure.
`main(argv)` returns the code, so tests call it in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
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


def _check_workdir(workdir: Path) -> None:
    """A work directory (or a parent of it) that is an existing file is bad input, not a crash."""
    for folder in (workdir, *workdir.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "the work directory" if folder == workdir else f"a parent of the work directory {workdir}"
                raise UsageError(f"{what} {folder} is a file, not a folder: pass --workdir DIR "
                                 "(or set ABLATE_HOME) to a folder")
            return


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (`kill`, a batch scheduler, a closed session) stops a verb exactly as Ctrl-C does:
    Tune stops its trials, runs end KILLED and nothing is left RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        handler = signal.getsignal(signal.SIGINT)  # whoever handles Ctrl-C now (Tune, while it runs)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        with _sigterm_as_ctrl_c():
            _check_workdir(args.workdir)
            return int(_command(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("ablate: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI turns every error into an exit code
        if args.debug:
            raise
        from ablate_common.redact import redact_text  # an error may quote a URI with its password

        if _is_usage_error(error):
            print(f"ablate {args.verb}: {redact_text(error)}", file=sys.stderr)
            return 2
        print(f"ablate {args.verb}: failed: {type(error).__name__}: {redact_text(error)}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 1


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":  # `python -m ablations.cli`: run the package's module, so its exception classes are ours
    from ablations.cli import entrypoint as _entrypoint

    _entrypoint()
