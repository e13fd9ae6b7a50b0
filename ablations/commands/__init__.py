"""One module per `ablate` verb; each exposes `add_arguments(parser)` and `run(args) -> int`."""
