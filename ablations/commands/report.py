"""`ablate report NAME|STUDY.yaml`: build the Plotly dashboard of a study or search from MLflow.

NAME is the study's name (its MLflow experiment). A STUDY.yaml is read only for its `name`, its
`kind` (a search also gets the Optuna figures) and its `reference` block (the paper's numbers,
which then win over the copy logged with the study). A NAME that is also an Optuna study in the
work directory's optuna.db is a search too. Prints the path of the HTML file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OPTUNA_DB = "optuna.db"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="NAME|STUDY.yaml", help="a study name or its study file")
    parser.add_argument("--out", type=Path, default=None, help="HTML file (default <workdir>/reports/<name>.html)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///<workdir>/mlflow.db)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage of a search (default sqlite:///<workdir>/optuna.db when the file is a search)")
    parser.add_argument("--optuna-study", default=None,
                        help="Optuna study name if it differs from NAME (default: the newest study named NAME*)")


def run(args: argparse.Namespace) -> int:
    import os

    from ablations import tracking
    from ablations.cli import UsageError
    from ablations.databases import check_driver

    name, study_file = _study_name(args.study)
    workdir = Path(args.workdir)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(workdir / 'mlflow.db').absolute()}"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {uri}: run a study first, or pass --workdir / --tracking-uri")
    tracking.check_reachable(uri)  # a server that is down: one line in seconds, not minutes of retries
    tracking.use_short_http_retries()
    out = (args.out or _default_out(workdir, name)).absolute()
    storage = args.storage or f"sqlite:///{(workdir / DEFAULT_OPTUNA_DB).absolute()}"
    check_driver(storage, "--storage")
    from dashboards.load import StudyNotFound  # plotly, pandas and MLflow: only once the input is known good
    from dashboards.report import build_report
    from dashboards.search_report import build_search_report

    is_search = (args.storage is not None or args.optuna_study is not None or study_file.get("kind") == "search"
                 or _has_optuna_study(storage, name))
    try:
        if is_search:
            path = build_search_report(name, uri, storage, out, _optuna_study(storage, name, args.optuna_study))
        else:
            path = build_report(name, uri, out, _spec_override(name, uri, study_file))
    except StudyNotFound as error:
        raise UsageError(str(error)) from error
    print(f"wrote {path}")
    return 0


def _default_out(workdir: Path, name: str) -> Path:
    """<workdir>/reports/<name>.html, for names that are plain file names (MLflow experiment names on
    a server are often paths such as /Users/x/exp: those need --out)."""
    from ablations.paths import UnsafePath, within

    try:
        return within(workdir, "reports", f"{name}.html")
    except UnsafePath as error:
        raise UnsafePath(f"{error}; the study name {name!r} cannot name the dashboard file: pass --out FILE") from None


def _study_name(argument: str) -> tuple[str, dict]:
    """NAME, or the `name` of a STUDY.yaml (read with yaml.safe_load; nothing else is validated here)."""
    from ablations.cli import UsageError
    from ablations.spec import load_yaml, read_file

    if not argument.endswith((".yaml", ".yml")):
        return argument, {}
    path = Path(argument)
    # the same guards as every study file: a regular UTF-8 file under 1 MB, safe YAML of a sane size
    study, _ = load_yaml(read_file(path), str(path))
    if not isinstance(study, dict) or not isinstance(study.get("name"), str):
        raise UsageError(f"{path}: expected a mapping with a `name` (the study's name), got {type(study).__name__}")
    return study["name"], study


def _spec_override(name: str, uri: str, study_file: dict) -> dict | None:
    """The logged spec with the file's `reference` block on top (the paper's numbers can be edited
    after a run); None (use the logged spec) when no file was given."""
    if not study_file:
        return None
    from ablate_common.store import open_client
    from dashboards.load import find_experiment, read_spec, search_kind

    client = open_client(uri)
    experiment = find_experiment(client, name)
    logged = read_spec(client, search_kind(client, experiment.experiment_id, "study"))
    merged = {**study_file, **logged}
    if "reference" in study_file:
        merged["reference"] = study_file["reference"]
    return merged


def _has_optuna_study(storage: str, name: str) -> bool:
    """A NAME with an Optuna study of the same name in the work directory's storage is a search."""
    if not (storage.startswith("sqlite:///") and Path(storage[len("sqlite:///"):]).exists()):
        return False
    import optuna

    return name in optuna.study.get_all_study_names(storage)


def _optuna_study(storage: str, name: str, given: str | None) -> str:
    """The Optuna study of search `name`: `given`, else NAME itself, else the newest study named NAME*."""
    import optuna

    from ablations.cli import UsageError

    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
        raise UsageError(f"no Optuna storage at {storage}: pass --storage URL")
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    if given:
        if given not in names:
            raise UsageError(f"no Optuna study {given!r} in {storage}; studies: {', '.join(names) or 'none'}")
        return given
    if name in names:
        return name
    matching = [n for n in names if n.startswith(name)]
    if not matching:
        raise UsageError(f"no Optuna study named {name!r}* in {storage}; studies: {', '.join(names) or 'none'}")
    return matching[-1]  # summaries come in creation order
