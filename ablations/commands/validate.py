"""`ablate validate STUDY.yaml`: check a study file without running or creating anything."""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("study", type=Path, help="the study (or search) YAML file")
    parser.add_argument("--profile", default=None, help="check against this profile instead of the study's own")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="folder with the real datasets (replaces the file's data.root), as for run and search")


def run(args) -> int:
    from ablations.search import data_configs, describe, is_search_file, load_search
    from ablations.spec import check_data, load_spec
    from ablations.study import expand

    data_root = str(Path(args.data_root).expanduser().absolute()) if args.data_root else None
    if is_search_file(args.study):  # kind: search -> the Optuna search checks
        search = load_search(args.study, args.profile, data_root)
        check_data(data_configs(search), str(args.study))
        print(f"{args.study}: ok - {describe(search)}")
        return 0
    spec = load_spec(args.study, args.profile, data_root)
    trials = expand(spec)
    check_data([t.config for t in trials], str(args.study))  # real datasets under data.root
    pretrains = len({t.pretrain_key for t in trials if t.config.pretrain.enabled})
    print(f"{args.study}: ok - study {spec.name!r}, {len(trials)} trials, {pretrains} pre-trainings, "
          f"profile {spec.profile}, metric {spec.metric.name} ({spec.metric.mode})")
    return 0
