"""Data kinds behind a registry: name -> DataKind (class names, up-front checks, loading, the test split)."""

from training.data.registry import (
    DATA_KINDS,
    DataKind,
    FixedSplit,
    check_data,
    class_names,
    has_test,
    is_multilabel,
    load_splits,
    load_test,
)
from training.data.samples import ImageSet, Splits

__all__ = [
    "DATA_KINDS",
    "DataKind",
    "FixedSplit",
    "ImageSet",
    "Splits",
    "check_data",
    "class_names",
    "has_test",
    "is_multilabel",
    "load_splits",
    "load_test",
]
