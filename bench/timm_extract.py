"""Extraction speed of a timm model: timm's own loop against clipprobe's extraction, same weights,
same images, same precision.

timm's loop is the one its docs and `validate.py` run: the model's eval transform
(`resolve_model_data_config` + `create_transform`) on each PIL image (converted to RGB first, as
timm's `ImageDataset` reads images) in a torch `DataLoader`, then `forward_features` and
`forward_head(pre_logits=True)` per batch under `torch.no_grad`.  clipprobe's side is the library's
own `extract_split` on the same images written as a prepared split (PNG bytes in Parquet, as `prepare`
writes them), Parquet shards included.  Both use the same batch size and DataLoader workers; model
loading and a one-batch warm-up of each side are outside the timings.

    python bench/timm_extract.py                                   # timm:vit_small_patch16_224, 500 Fashion-MNIST images
    python bench/timm_extract.py --repeats 3 --model timm:convnext_tiny
    python bench/timm_extract.py --precision bf16                  # both sides in bf16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from clipprobe import devices
from clipprobe.encode import encoders, extract, towers
from clipprobe.errors import ClipprobeError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import clipprobe_extract, fashion_mnist, timed, write_prepared  # noqa: E402  (bench/extract.py)


def timm_loop(model, dataset, n: int, batch: int, workers: int, device, dtype) -> np.ndarray:
    """timm's loop: its transform in the DataLoader, the model's pre-logits features per batch."""
    out = []
    with torch.no_grad():
        for images, _ in DataLoader(Subset(dataset, range(n)), batch_size=batch, num_workers=workers):
            x = images.to(device, dtype)
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.cat(out).float().cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="timm:vit_small_patch16_224")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--data", type=Path, help="folder with Fashion-MNIST IDX .gz files "
                    "(default: Debian's /usr/share/datasets/fashion-mnist)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", help="both sides: fp32 | bf16 | fp16 (GPU) | auto")
    ap.add_argument("--batch-size", default="auto", help="both sides (auto: clipprobe's, 100 on CPU)")
    ap.add_argument("--workers", default="auto", help="DataLoader workers, both sides (auto: clipprobe's, 0 on CPU)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each, alternating; the median is printed")
    args = ap.parse_args()
    if not args.model.startswith("timm:"):
        raise ClipprobeError(f"--model {args.model}: a timm model, timm:<name>")

    import timm
    from timm.data import create_transform, resolve_model_data_config
    from torchvision import transforms as T

    device = devices.pick_device(args.device)
    dtype = devices.pick_precision(args.precision, device)
    as_int = lambda v: v if v == "auto" else int(v)
    args.batch, args.workers_n = extract.loader_settings(as_int(args.batch_size), as_int(args.workers), device)
    args.weights = "random"      # speed does not depend on the weights; the same weights on both sides

    encoder = encoders.load_encoder(args.model, args.weights)
    model = timm.create_model(args.model.removeprefix("timm:"), pretrained=False, num_classes=0)
    model.load_state_dict(encoder.visual.model.state_dict())
    model = model.to(device, dtype).eval()
    towers.place(encoder, device, dtype)
    transform = T.Compose([T.Lambda(lambda im: im.convert("RGB")),
                           create_transform(**resolve_model_data_config(model), is_training=False)])

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = fashion_mnist(args.data, tmp / "raw", transform)
        n = min(args.images, len(data))
        prepared = write_prepared(data, n, tmp / "prepared")
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"{n} Fashion-MNIST 28x28 images, {args.model} (random), {device.type} ({where}), "
              f"{str(dtype)[6:]}, batch {args.batch}, {args.workers_n} workers on both sides", flush=True)

        timm_loop(model, data, min(n, args.batch), args.batch, 0, device, dtype)   # warm-up: a batch each
        with torch.inference_mode():
            encoder.visual(torch.randn(args.batch, *resolve_model_data_config(model)["input_size"], device=device,
                                       dtype=dtype))
        runs = {"timm": [], "clipprobe": []}
        for r in range(args.repeats):
            t, x_t = timed(lambda: timm_loop(model, data, n, args.batch, args.workers_n, device, dtype), device)
            runs["timm"].append(t)
            t, x_c = timed(lambda: clipprobe_extract(encoder, prepared, tmp / f"features{r}", args, device, dtype),
                           device)
            runs["clipprobe"].append(t)
        rate = {k: n / statistics.median(t) for k, t in runs.items()}
        for k, v in rate.items():
            print(f"{k:>9}: {v:9.1f} images/s  (median of {args.repeats}: {', '.join(f'{t:.2f}' for t in runs[k])} s)")
        print(f"    ratio: {rate['clipprobe'] / rate['timm']:.2f}x clipprobe / timm's loop")
        cos = np.sum(x_t * x_c, 1) / (np.linalg.norm(x_t, axis=1) * np.linalg.norm(x_c, axis=1))
        print(f"feature cosine clipprobe vs timm's loop: min {cos.min():.6f}, mean {cos.mean():.6f}")


if __name__ == "__main__":
    try:
        main()
    except ClipprobeError as e:
        sys.exit(f"error: {e}")
