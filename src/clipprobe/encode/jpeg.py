"""JPEG decoding on the device, for splits of image files or tar members on CUDA.

The loader's workers only read each file (or tar member): an RGB or grayscale JPEG travels as its bytes, and the
device decodes a batch's JPEGs in one call (torchvision's `decode_jpeg`: nvjpeg on CUDA), then
resizes, crops and normalises them as `TensorPreprocess` does.  Everything else keeps the loader's
PIL path, with the same features as without this module:

- files that are not JPEGs (PNG, ...) and CMYK/YCCK JPEGs (which PIL and nvjpeg may convert to RGB
  differently) are decoded by PIL in the loader, as `SplitImages` does;
- a JPEG the device decoder rejects is decoded by PIL in the main process, which stops with the
  loader's own error, naming the file, if PIL cannot decode it either.

The decoder is a parameter, so the routing runs on CPU too (torchvision's CPU decoder, libjpeg-turbo
like PIL's, gives PIL's pixels exactly; nvjpeg's may differ by a level).  Resizing on the device
instead of PIL's loader-side shrink keeps features at cosine >= 0.999 (tests).
"""

from __future__ import annotations

import io
import warnings

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from clipprobe.data.prepared import SplitImages
from clipprobe.encode.preprocess import TensorPreprocess, collate_by_shape

DEVICE_MODES = ("RGB", "L")  # JPEGs the device decodes; CMYK stays with PIL


def applies(columns, prep, device: torch.device, wanted: bool | None = None) -> bool:
    """Decode on the device where the split's images are files or tar members and the tensor
    preprocess can follow, if `wanted`; None = where it pays, on CUDA (on CPU the loader's PIL path is as fast)."""
    return (("path" in columns or "member" in columns) and isinstance(prep, TensorPreprocess)
            and (device.type == "cuda" if wanted is None else wanted))


class JpegFiles:
    """`images` (a file-based split) with its RGB and grayscale JPEGs as their files' bytes
    (1-d uint8 tensors) instead of decoded images (3-d): (tensor, row index) items."""

    def __init__(self, images: SplitImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        try:
            data = self.images.encoded(i)
            with Image.open(io.BytesIO(data)) as im:   # reads the header only
                device = im.format == "JPEG" and im.mode in DEVICE_MODES
        except Exception:   # unreadable: the loader's path raises its own error, naming the file
            device = False
        if not device:
            return self.images[i]
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), i


def collate(items):
    """(groups of loader-decoded images as `collate_by_shape` makes them, with positions in the
    batch; (positions, JPEG bytes, row indices) of the JPEGs left to the device)."""
    pil = [k for k, (x, _) in enumerate(items) if x.dim() == 3]
    jpegs = [k for k, (x, _) in enumerate(items) if x.dim() == 1]
    groups = [(torch.tensor(pil)[pos], x) for pos, x in collate_by_shape([items[k] for k in pil])] if pil else []
    return groups, (torch.tensor(jpegs, dtype=torch.long), [items[k][0] for k in jpegs], [items[k][1] for k in jpegs])


class DeviceJpegPreprocess:
    """The device step of `JpegFiles` batches: decode the JPEGs on the device, then `prep` on all."""

    def __init__(self, prep: TensorPreprocess, images: SplitImages, decode=decode_jpeg):
        self.prep, self.images, self.decode = prep, images, decode

    def _decode(self, data: list[torch.Tensor], device: torch.device):
        with warnings.catch_warnings():   # torchvision 0.29 deprecates its decoders for TorchCodec's
            warnings.filterwarnings("ignore", "The image decoding and encoding capabilities", DeprecationWarning)
            return self.decode(data, mode=ImageReadMode.RGB, device=device)

    def _decode_each(self, data, rows, device: torch.device) -> list[torch.Tensor]:
        """The batch's JPEGs decoded; where the decoder rejects the batch, one by one, and those it
        rejects through the loader's PIL path."""
        try:
            return self._decode(data, device)
        except RuntimeError:  # one bad file fails the whole batched call
            out = []
            for x, i in zip(data, rows):
                try:
                    out.append(self._decode([x], device)[0])
                except RuntimeError:
                    out.append(self.prep.host(self.images.open(i)).to(device))
            return out

    def to_device(self, batch, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        groups, (pos, data, rows) = batch
        shapes: dict[tuple, list] = {}
        for p, image in zip(pos.tolist(), self._decode_each(data, rows, device) if data else []):
            shapes.setdefault(tuple(image.shape), []).append((p, image))
        decoded = [(torch.tensor([p for p, _ in g]), torch.stack([im for _, im in g])) for g in shapes.values()]
        return self.prep.to_device(list(groups) + decoded, device, dtype)
