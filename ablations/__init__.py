"""The ablation platform: study files, trials on Ray Tune, MLflow tracking, Optuna searches, the CLI."""
