"""`ablate estimate STUDY.yaml`: trials, pre-trainings, FLOPs and wall time, before running.

Each distinct model runs one small step under torch's FLOP counter (a few
seconds at the laptop profile, up to a minute at the paper profile on a CPU).
"""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("study", type=Path, help="the study YAML file")
    parser.add_argument("--profile", default=None, help="override the study's profile (smoke | laptop | paper)")
    parser.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                        help="trials side by side when it runs (default: the study's cpu resources on this machine)")


def run(args) -> int:
    import os

    import torch

    from ablations.estimate import estimate_study, format_estimate
    from ablations.spec import load_spec

    spec = load_spec(args.study, args.profile)
    # time the probe steps the way a trial would run them: with its own thread budget
    threads = max(1, int(spec.resources.cpu))
    torch.set_num_threads(threads)
    concurrent = args.max_concurrent or max(1, (os.cpu_count() or 1) // threads)
    print(f"estimating {args.study} ...")
    print(format_estimate(estimate_study(spec), concurrent))
    return 0
