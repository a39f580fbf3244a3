"""Optuna studies over the models' search spaces in params.yaml; the best trial is written back."""
