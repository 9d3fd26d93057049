"""DALI input pipelines (train / val), the PyTorch-facing loader and a profiler for any training loop's input."""
from pipelines.bad_files import UnreadableImageError
from pipelines.loader import DaliLoader, make_loader
from pipelines.normalize import has_fill
from pipelines.options import IMAGENET_MEAN, IMAGENET_STD, PipelineOptions
from pipelines.profiler import InputProfiler
from pipelines.train_pipeline import train_pipeline
from pipelines.val_pipeline import val_pipeline

__all__ = ["make_loader", "DaliLoader", "UnreadableImageError", "has_fill", "IMAGENET_MEAN", "IMAGENET_STD",
           "PipelineOptions", "train_pipeline", "val_pipeline", "InputProfiler"]
