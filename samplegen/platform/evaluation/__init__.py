"""Evaluation of trained models: `evaluate_model` writes metrics.json and summary.md for a split."""

from samplegen.platform.evaluation.run import (
    EvaluationError,
    EvaluationSettings,
    default_out_dir,
    evaluate_model,
)

__all__ = ["EvaluationError", "EvaluationSettings", "default_out_dir", "evaluate_model"]
