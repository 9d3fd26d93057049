"""DALI input pipelines (train / val / features / video), the PyTorch-facing loaders and a profiler for any
training loop's input."""
from pipelines.errors import UnreadableImageError
from pipelines.loader import DaliLoader, EpochLoader, make_loader
from pipelines.normalize import has_fill
from pipelines.profiler import InputProfiler
from pipelines.sequence_loader import SequenceBatch, SequenceLoader
from pipelines.settings import IMAGENET_MEAN, IMAGENET_STD, ImageOptions, PipelineOptions, TrainAugment
from pipelines.train_pipeline import train_pipeline
from pipelines.val_pipeline import val_pipeline

__all__ = ["make_loader", "DaliLoader", "EpochLoader", "SequenceLoader", "SequenceBatch", "UnreadableImageError",
           "has_fill", "IMAGENET_MEAN", "IMAGENET_STD", "PipelineOptions", "ImageOptions", "TrainAugment",
           "train_pipeline", "val_pipeline", "InputProfiler"]
