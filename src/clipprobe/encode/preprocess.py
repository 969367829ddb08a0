"""The model's preprocess, split between the data loader and the device.

open_clip's and timm's eval preprocess is PIL: resize, centre crop, to float, normalise, one
image at a time.  Run as is in the loader, every image crosses to the device as 224x224 float32
(600 KB for a 28x28 Fashion-MNIST image).  `TensorPreprocess` instead has the loader
ship uint8 images and does the float work on the device, per batch:

- images the resize would enlarge (CIFAR-size and other small images) travel at their
  own size and are resized there, with torchvision's tensor bicubic, whose antialiased
  kernel is PIL's (features match the PIL path to cosine >= 0.999, see the tests);
- images the resize would shrink are resized and cropped in the loader with the model's
  own PIL transforms (PIL's antialiasing, and a smaller transfer), then travel as uint8.

A preprocess of any other shape (a Hugging Face image processor, among others) falls back to
`PilPreprocess`: the whole transform in the loader.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as F


class PilPreprocess:
    """The model's transform, whole, in the loader; the device step only moves and casts."""

    def __init__(self, transform):
        self.transform = transform

    def host(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)

    def to_device(self, batch, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return _assemble([(pos, x.to(device, non_blocking=True)) for pos, x in batch], device, dtype)


class TensorPreprocess:
    """Resize + centre crop + normalise as in the model's PIL preprocess, done per batch on the device."""

    def __init__(self, resize: T.Resize, crop: T.CenterCrop, normalize: T.Normalize):
        self.resize, self.crop = resize, crop
        self.mean, self.std = tuple(map(float, normalize.mean)), tuple(map(float, normalize.std))

    def enlarges(self, width: int, height: int) -> bool:
        size = self.resize.size
        if isinstance(size, int) or len(size) == 1:
            return min(width, height) <= (size if isinstance(size, int) else size[0])
        return height <= size[0] and width <= size[1]

    def host(self, image: Image.Image) -> torch.Tensor:
        """RGB image -> uint8 CHW tensor, at its own size unless the resize shrinks it."""
        if not self.enlarges(*image.size):
            image = self.crop(self.resize(image))
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)

    def to_device(self, batch, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        parts = []
        for pos, x in batch:
            x = x.to(device, non_blocking=True)
            if tuple(x.shape[-2:]) != tuple(self.crop.size):
                x = F.resize(x, self.resize.size, interpolation=self.resize.interpolation, antialias=True)
                x = F.center_crop(x, list(self.crop.size))
            x = x.float().div_(255)
            for c, (m, sd) in enumerate(zip(self.mean, self.std)):   # scalars: no host->device copy
                x[:, c].sub_(m).div_(sd)
            parts.append((pos, x))
        return _assemble(parts, device, dtype)


def _assemble(parts, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One batch tensor in row order from per-shape groups."""
    if len(parts) == 1:
        return parts[0][1].to(dtype)
    n = sum(len(pos) for pos, _ in parts)
    out = torch.empty((n, *parts[0][1].shape[1:]), device=device, dtype=dtype)
    for pos, x in parts:
        out[pos.to(device, non_blocking=True)] = x.to(dtype)
    return out


def collate_by_shape(items) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A batch of (image, row) items as [(positions in the batch, stacked images)], one group
    per image shape, so images of different sizes can share a batch."""
    groups: dict[tuple, list[int]] = {}
    for k, (image, _) in enumerate(items):
        groups.setdefault(tuple(image.shape), []).append(k)
    return [(torch.tensor(ks), torch.stack([items[k][0] for k in ks])) for ks in groups.values()]


def _is(step, *names: str) -> bool:
    return type(step).__name__ in names or getattr(step, "__name__", "") in names


def for_model(preprocess) -> TensorPreprocess | PilPreprocess:
    """The device-side split of a torchvision preprocess where it has the standard shape, else the
    transform whole in the loader.  Standard: Resize, CenterCrop, [RGB conversion], ToTensor, Normalize,
    as open_clip and timm build their eval transforms (images reach the preprocess in RGB already)."""
    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) == 5 and _is(steps[2], "MaybeConvertMode", "_convert_to_rgb"):
        steps.pop(2)
    shape_ok = (len(steps) == 4 and isinstance(steps[0], T.Resize) and isinstance(steps[1], T.CenterCrop)
                and _is(steps[2], "MaybeToTensor", "ToTensor") and isinstance(steps[3], T.Normalize))
    if not shape_ok or steps[0].max_size is not None:
        return PilPreprocess(preprocess)
    return TensorPreprocess(steps[0], steps[1], steps[3])
