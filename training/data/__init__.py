"""Data kinds behind a registry: name -> DataKind (class names, up-front checks, loading)."""

from training.data.registry import DATA_KINDS, DataKind, check_data, class_names, is_multilabel, load_splits
from training.data.samples import ImageSet, Splits

__all__ = ["DATA_KINDS", "DataKind", "ImageSet", "Splits", "check_data", "class_names", "is_multilabel", "load_splits"]
