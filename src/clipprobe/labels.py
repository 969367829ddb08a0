"""Labels as the prepared splits and the feature store hold them.

A class index per image (int64),
or for multi-label datasets (VOC2007) a row per image of one int8 per class: 1 present, 0 absent,
-1 present but only as "difficult" objects, which VOC's evaluation ignores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def to_arrow(labels: np.ndarray) -> pa.Array:
    """int64 class indices, or a fixed-size list of int8 per image for a [n, classes] array."""
    if labels.ndim == 1:
        return pa.array(labels.astype(np.int64), pa.int64())
    flat = pa.array(np.ascontiguousarray(labels, np.int8).reshape(-1), pa.int8())
    return pa.FixedSizeListArray.from_arrays(flat, labels.shape[1])


def from_arrow(column) -> np.ndarray:
    """The inverse of `to_arrow` for a column (chunked or not) of either kind."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        return column.flatten().to_numpy(zero_copy_only=False).astype(np.int8).reshape(len(column), width)
    return column.to_numpy(zero_copy_only=False).astype(np.int64)


def positives(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Images per class: each image counts for its class, or for every class present in it."""
    if labels.ndim == 1:
        return np.bincount(labels, minlength=n_classes)
    return (labels == 1).sum(axis=0)
