"""Training and evaluating one task x model x fold: the job, its loop, schedule, oversampling and files."""

from headmri.training.checkpoint import load_trained, save_trained
from headmri.training.job import OUTPUTS, EncoderChoice, FoldJob, FoldSettings, train_fold

__all__ = ["OUTPUTS", "EncoderChoice", "FoldJob", "FoldSettings", "load_trained", "save_trained", "train_fold"]
