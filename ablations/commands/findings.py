"""`ablate findings [STUDY ...]`: per study and per paper finding, our effect and a verdict.

Reads only what a study run logged (its spec with the `reference` block, `decisions.json` when
its seeds were adaptive, the trial runs' metrics), so it works on any store, a server included.
STUDY is a study name or its study file; none means every study in the store with a reference.
Prints one table per study; `--out FILE.md` also writes them as markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("studies", nargs="*", metavar="STUDY", help="study names or study files (default: all)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE.md", help="also write the tables as markdown")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///<workdir>/mlflow.db)")


def run(args: argparse.Namespace) -> int:
    from ablations import tracking
    from ablations.cli import UsageError

    uri = tracking.resolve_tracking_uri(args.workdir, args.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {tracking.redact_uri(uri)}: run a study first, or pass --workdir / "
                         "--tracking-uri")
    tracking.check_reachable(uri)  # a server that is down: one line in seconds, not minutes of retries
    tracking.use_short_http_retries()
    given = [_name(s) for s in args.studies]
    from dashboards import findings, load  # plotly, pandas and MLflow: only once the input is known good

    names = given or _studies_with_reference(uri)
    if not names:
        print(f"no study with a paper reference in {tracking.redact_uri(uri)}")
        return 0
    text, markdown = [], ["# Our results against the paper's findings", ""]
    for name in names:
        try:
            data = load.load_study(name, uri)
        except load.StudyNotFound as error:
            raise UsageError(str(error)) from error
        report = findings.StudyFindings.of(data)
        text.append(report.text())
        markdown.append(report.markdown())
    print("\n\n".join(text))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(markdown) + "\n")
        print(f"\nwrote {args.out}")
    return 0


def _name(argument: str) -> str:
    """A study name, or the `name` of a study file."""
    if not argument.endswith((".yaml", ".yml")):
        return argument
    from ablations.cli import UsageError
    from ablations.spec import load_yaml, read_file

    path = Path(argument)
    # the same guards as every study file: a regular UTF-8 file under 1 MB, safe YAML of a sane size
    study, _ = load_yaml(read_file(path), str(path))
    if not isinstance(study, dict) or not isinstance(study.get("name"), str):
        raise UsageError(f"{path}: expected a mapping with a `name` (the study's name)")
    return study["name"]


def _studies_with_reference(uri: str) -> list[str]:
    """Experiments whose newest study run logged a spec with a reference block, by name."""
    from ablate_common.store import open_client
    from dashboards.load import read_spec, search_kind

    client = open_client(uri)
    names = []
    for experiment in sorted(client.search_experiments(), key=lambda e: e.name):
        spec = read_spec(client, search_kind(client, experiment.experiment_id, "study"))
        if (spec.get("reference") or {}).get("ranking") or (spec.get("reference") or {}).get("values"):
            names.append(experiment.name)
    return names
