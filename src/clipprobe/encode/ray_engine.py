"""Feature extraction on Ray (`extract.engine: ray`), as Ray Data's batch inference.

The driver puts the prepared split's rows (file paths, encoded images or an indexed source's
locations, never decoded tensors) into Ray's object store, one block per batch of the local engine; `map_batches`
sends each block through an `Embedder` actor, which loads the encoder once with the same
code as the local engine (`load_encoder`, its preprocess, `SplitImages`).  Embeddings come
back tagged with their row, so the driver writes each shard, in prepared order, as soon as
all its rows are in.  Shards, manifest and fingerprint are the local engine's: only the
missing shards of a killed run are computed again, by either engine.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from clipprobe.data.prepared import SplitImages, location_columns, read_info, read_split, sample_paths
from clipprobe.encode import preprocess, store
from clipprobe.encode.encoders import load_encoder
from clipprobe.encode.extract import Spec, encode_batches, run_split
from clipprobe.encode.towers import Encoder, place
from clipprobe.errors import ClipprobeError
from clipprobe.params import ExtractParams, ModelParams

ROW = "__row__"  # position in the prepared split (results may come back in any order); no prepared column


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs it; plain `ray` lacks it)
    except ImportError:
        raise ClipprobeError("extract.engine=ray needs Ray Data: pip install clipprobe[ray]") from None
    return ray


@contextlib.contextmanager
def connected(address: str | None):
    """Connect to Ray for the block: `auto` or an address joins a running cluster, empty
    starts a local one.  Actors run this driver's clipprobe, shipped as a py_module, whatever
    version a node has installed.  A Ray the caller already started is used as it is."""
    import clipprobe

    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        # "local" starts a fresh Ray even where `ray start` ran: plain ray.init() would join that one
        ray.init(address=address or "local", include_dashboard=False, runtime_env={"py_modules": [clipprobe]})
    except ConnectionError as e:
        raise ClipprobeError(f"extract.ray.address={address}: no Ray cluster there ({e}); start one with "
                             "`ray start --head`, or leave the address empty for a local Ray") from None
    try:
        yield ray
    finally:
        ray.shutdown()


class Embedder:
    """A Ray Data actor: the frozen encoder, loaded once, embedding blocks of prepared rows."""

    def __init__(self, model: ModelParams, layer: str, root: str, device: str, dtype: torch.dtype,
                 expected_preprocess: str):
        # Errors wait for __call__: Ray reports a failed __init__ only as a dead actor.
        self.error = None
        try:
            encoder = load_encoder(model.name, model.weights, layer)
        except ClipprobeError as e:
            self.error = e
            return
        if repr(encoder.preprocess) != expected_preprocess:  # the fingerprint holds the driver's
            self.error = ClipprobeError("a Ray actor builds another preprocess than the driver; install "
                                        "the same clipprobe and model library (open_clip, timm, transformers) "
                                        "versions on every node")
            return
        self.device, self.dtype = torch.device(device), dtype
        self.encoder = place(encoder, self.device, dtype)   # as the local engine does
        self.prep = preprocess.for_model(encoder.preprocess)
        self.root = root

    def __call__(self, block: pa.Table) -> dict[str, np.ndarray]:
        if self.error:
            raise self.error
        images = SplitImages(block, self.root, self.prep.host)
        batch = preprocess.collate_by_shape([images[i] for i in range(len(images))])
        emb = encode_batches(self.encoder, [batch], self.prep, self.device, self.dtype)
        return {ROW: block.column(ROW).to_numpy(), "embedding": emb}


def _blocks(table: pa.Table, shards: list[int], shard_size: int, batch_size: int) -> list[pa.Table]:
    """The rows of `shards` as the local engine batches them (batches never cross a shard);
    `take` copies, so each block ships only its own rows."""
    rows = table.num_rows
    return [table.take(np.arange(lo, min(lo + batch_size, hi)))
            for s in shards
            for hi in [min(rows, (s + 1) * shard_size)]
            for lo in range(s * shard_size, hi, batch_size)]


def extract_split(encoder: Encoder, prepared: Path, split: str, scratch: Path, spec: Spec, fp: str, *,
                  model: ModelParams, extract: ExtractParams, device: torch.device, dtype: torch.dtype) -> dict:
    """Extract one prepared split into `scratch` on the connected Ray and return its manifest.
    `encoder` is the driver's copy: its preprocess and embedding size, never its weights, are used here."""
    ray = require_ray()
    root = read_info(prepared)["root"]

    def write_shards(todo: list[int], progress) -> None:
        table = read_split(prepared, split)
        inputs = table.select(location_columns(table.column_names))
        inputs = inputs.append_column(ROW, pa.array(np.arange(table.num_rows), pa.int64()))
        ds = ray.data.from_arrow(_blocks(inputs, todo, spec.shard_size, spec.batch_size)).map_batches(
            Embedder, batch_size=None, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=extract.ray.actors),
            num_gpus=extract.ray.gpus_per_actor,
            fn_constructor_kwargs=dict(model=model, layer=extract.layer, root=root, device=device.type,
                                       dtype=dtype, expected_preprocess=repr(encoder.preprocess)))
        ds.context.raise_original_map_exception = True  # an actor's ClipprobeError stays one line
        _write_shards(ds, table, scratch, todo, spec.shard_size, encoder.embed_dim, split, progress)

    return run_split(prepared, split, scratch, spec, fp, encoder.embed_dim, write_shards, engine="Ray")


def _write_shards(ds, table: pa.Table, scratch: Path, todo: list[int], size: int, dim: int, split: str,
                  progress) -> None:
    """Gather the embeddings streaming out of `ds` by row; write each shard once it is whole."""
    rows = table.num_rows
    ids = table.column("id").to_numpy()
    labels = table.column("label").to_numpy()
    paths = sample_paths(table)
    pending = {s: [np.empty((min(rows, (s + 1) * size) - s * size, dim), np.float32), 0] for s in todo}
    try:
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            r, emb = out[ROW], out["embedding"]
            for s in np.unique(r // size).tolist():
                mine = r // size == s
                buf = pending[s]
                buf[0][r[mine] - s * size] = emb[mine]
                buf[1] += int(mine.sum())
                if buf[1] == len(buf[0]):
                    lo, hi = s * size, s * size + len(buf[0])
                    store.write_shard(scratch, s, ids[lo:hi], labels[lo:hi], buf[0],
                                      None if paths is None else paths[lo:hi])
                    del pending[s]
            progress(len(r))
    except ClipprobeError as e:  # an actor's, wrapped by Ray with a traceback or retry notes
        raise ClipprobeError(str(getattr(e, "cause", e)).splitlines()[0]) from None
    if pending:  # cannot happen unless Ray lost rows; never write a manifest over a hole
        raise ClipprobeError(f"{split}: Ray returned no embeddings for shard(s) {sorted(pending)}; rerun to resume")
