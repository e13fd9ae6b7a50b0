"""`ablate estimate STUDY.yaml`: trials, pre-trainings, FLOPs and wall time, before running.

Each distinct model runs one small step under torch's FLOP counter (a few
seconds at the laptop profile, up to a minute at the paper profile on a CPU).
When the study already has results in the work directory's MLflow store (or `--pilot NAME`
names a study that has), it also prints, per comparison, the seeds that would detect
min_effect with 80% power given the measured paired spread, and what they cost.
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("study", type=Path, help="the study YAML file")
    parser.add_argument("--profile", default=None, help="override the study's profile (smoke | laptop | paper)")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                        help="trials side by side when it runs (default: the study's cpu resources on this machine)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store with the results (default: $MLFLOW_TRACKING_URI, else the work directory's)")
    parser.add_argument("--pilot", default=None, metavar="NAME",
                        help="measure the paired spread on this study's results instead (default: the study itself)")
    parser.add_argument("--min-effect", type=float, default=None, metavar="X",
                        help="difference to detect, in the metric's units (default: the study's seeds.min_effect)")


def run(args) -> int:
    import os

    import torch

    from ablations.cli import UsageError
    from ablations.estimate import estimate_study, format_estimate
    from ablations.spec import load_spec

    spec = load_spec(args.study, args.profile)
    # time the probe steps the way a trial would run them: with its own thread budget
    threads = max(1, int(spec.resources.cpu))
    torch.set_num_threads(threads)
    concurrent = args.max_concurrent or max(1, (os.cpu_count() or 1) // threads)
    if args.min_effect is not None and not args.min_effect > 0:
        raise UsageError(f"--min-effect must be > 0, got {args.min_effect}")
    print(f"estimating {args.study} ...")
    print(format_estimate(estimate_study(spec), concurrent))
    print(_power(args, spec, concurrent))
    return 0


def _power(args, spec, concurrent: int) -> str:
    """The power section: from the results MLflow holds for the study (or its pilot)."""
    from ablations import tracking
    from ablations.estimate import estimate_power, format_power
    from ablations.verdicts import values_from_tags

    min_effect = args.min_effect or (spec.adaptive.min_effect if spec.adaptive else None)
    if min_effect is None:
        return "power: pass --min-effect X (or give the study adaptive seeds) to size the seeds per comparison"
    uri = tracking.resolve_tracking_uri(args.workdir, args.tracking_uri)
    name = args.pilot or spec.name
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return f"power: no results for {name!r} yet (no MLflow store at {uri}); run the study or a pilot first"
    tracker = tracking.Tracker(uri)
    experiment = tracker.client.get_experiment_by_name(name)
    if experiment is None:
        return f"power: no results for {name!r} yet in {tracking.redact_uri(uri)}; run the study or a pilot first"
    values, seconds = values_from_tags(spec, tracking.latest_trial_runs(tracker, experiment.experiment_id))
    return format_power(spec, estimate_power(spec, values, seconds, min_effect, concurrent))
