"""`ablate validate STUDY.yaml`: check a study file without running or creating anything."""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("study", type=Path, help="the study (or search) YAML file")
    parser.add_argument("--profile", default=None, help="check against this profile instead of the study's own")


def run(args) -> int:
    from ablations.search import describe, is_search_file, load_search
    from ablations.spec import load_spec
    from ablations.study import expand

    if is_search_file(args.study):  # kind: search -> the Optuna search checks
        print(f"{args.study}: ok - {describe(load_search(args.study, args.profile))}")
        return 0
    spec = load_spec(args.study, args.profile)
    trials = expand(spec)
    pretrains = len({t.pretrain_key for t in trials if t.config.pretrain.enabled})
    print(f"{args.study}: ok - study {spec.name!r}, {len(trials)} trials, {pretrains} pre-trainings, "
          f"profile {spec.profile}, metric {spec.metric.name} ({spec.metric.mode})")
    return 0
