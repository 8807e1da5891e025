"""Datasets (registered by name), the embedded shapes benchmark, per-modality processing and collation."""

from . import (  # noqa: F401  (registration)
    food101,
    hateful_memes,
    hf_dataset,
    image_folder,
    jsonl,
    mmimdb,
    shapes,
    snli_ve,
    table,
    webdataset,
)
from .jsonl import read_jsonl
from .labels import LabelMap
from .processing import Collator, ExampleProcessor, ProcessedDataset, build_dataloader, build_image_transform
from .records import DataError, MultimodalDataset
from .registry import create_dataset, dataset_params, list_datasets, register_dataset
from .shapes import generate_shapes, sample_examples
from .splits import SplitNotFoundError
from .tokenizer import train_wordpiece_tokenizer

__all__ = [
    "Collator",
    "DataError",
    "ExampleProcessor",
    "LabelMap",
    "MultimodalDataset",
    "ProcessedDataset",
    "SplitNotFoundError",
    "build_dataloader",
    "build_image_transform",
    "create_dataset",
    "dataset_params",
    "generate_shapes",
    "list_datasets",
    "read_jsonl",
    "register_dataset",
    "sample_examples",
    "train_wordpiece_tokenizer",
]
