"""What a scoring stage writes beside its metrics: the run's record and its per-image predictions.

DVC's metrics files (`metrics/*.json`) hold numbers only, the headline first: `score` and its 95%
interval, `n_test`.  The record (`results/<stage>.json`) holds the rest: the identity of the run
(dataset, model, weights, layer and the fingerprint of the test features it scored), the params its
protocol depends on, every metric with its interval, the notes printed while it ran.  The report reads
the records of each experiment and shows a number only where the record's identity and params are the
experiment's.  Per-image predictions (`results/<stage>.parquet`: id, label, prediction; multi-label:
the scores) let two experiments on one test set be compared image by image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from clipprobe import atomic

# identity key of a record -> the param of the experiment it must equal
PARAM_OF = {"dataset": "data.name", "model": "model.name", "weights": "model.weights", "layer": "extract.layer"}


def identity(manifest: dict) -> dict:
    """What identifies the features a stage scored: the run's identity as the features' manifest
    gives it, with the test split's fingerprint."""
    return {**{k: manifest.get(k) for k in PARAM_OF}, "features": manifest.get("fingerprint")}


def param_values(p, keys) -> dict:
    """{dotted key: value} of the params `keys` (a `params.Params`), as params.yaml spells them."""
    out = {}
    for key in keys:
        value = p
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def metrics_file(record: dict) -> dict:
    """The DVC metrics of a record: the headline score, its interval and the test-set size."""
    if "metric" not in record:     # nothing scored (e.g. zero-shot without a text tower)
        return {}
    m = record["metrics"][record["metric"]]
    return {"score": m["value"], "score_low": m["low"], "score_high": m["high"], "n_test": record["n_test"]}


def write_predictions(path: Path, ids: np.ndarray, y: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
    """Per test image: id, label and the predicted class; multi-label: id, label row and every
    class's score (what the 11-point AP needs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clipprobe.labels import to_arrow

    cols = {"id": pa.array(np.asarray(ids, np.int64)), "label": to_arrow(np.asarray(y))}
    if y.ndim == 2:
        s = np.ascontiguousarray(scores, np.float32)
        cols["scores"] = pa.FixedSizeListArray.from_arrays(pa.array(s.reshape(-1)), s.shape[1])
    else:
        cols["prediction"] = pa.array(classes[np.argmax(scores, axis=1)].astype(np.int64))
    table = pa.table(cols)
    atomic.replace(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def read_predictions(source) -> dict:
    """{"id", "label", and "prediction" or "scores"} from a predictions file (a path or its bytes)."""
    import pyarrow.parquet as pq

    from clipprobe.labels import from_arrow

    table = pq.read_table(io.BytesIO(source) if isinstance(source, bytes) else source)
    out = {"id": table.column("id").to_numpy(), "label": from_arrow(table.column("label"))}
    if "scores" in table.column_names:
        col = table.column("scores").combine_chunks()
        out["scores"] = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1)
    else:
        out["prediction"] = table.column("prediction").to_numpy()
    return out
