"""Subject-level evaluation: slice probabilities -> subject probabilities -> metrics -> tables."""

from headmri.evaluation.aggregate import aggregate_subjects
from headmri.evaluation.metrics import binary_metrics, evaluate_fold, fold_metrics, multiclass_metrics
from headmri.evaluation.tables import metrics_table

__all__ = ["aggregate_subjects", "binary_metrics", "evaluate_fold", "fold_metrics", "metrics_table",
           "multiclass_metrics"]
