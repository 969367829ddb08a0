"""What identifies the run behind a file, and the check that two files come from the same run.

Identity travels with the data: the prepared `info.json` names the dataset, its classes and headline metric; each feature manifest adds the encoder; the probe and the
text embeddings copy what they were made from.  Downstream stages read these instead of importing the
registry or the model code, and check them before scoring one file against another."""

from __future__ import annotations

from clipprobe.errors import ClipprobeError

# what a feature split says about the data it came from (copied from the prepared info.json)
DATA_KEYS = ("dataset", "classes", "metric", "multi_label")
# what features must share with the probe fitted on them
ENCODER_KEYS = ("arch", "weights_id", "layer", "embed_dim")


def check(made_from: dict, manifest: dict, keys, where: str, what: str) -> None:
    """Stop unless the features in `where` (their `manifest`) agree with `made_from` on `keys`:
    `what` (the probe, the class embeddings) was made from other features."""
    for key in keys:
        if manifest.get(key) != made_from.get(key):
            raise ClipprobeError(f"{where}: features have {key}={manifest.get(key)!r} but {what} "
                                 f"{key}={made_from.get(key)!r}; run `dvc repro` to rebuild both")
