"""clipprobe: linear-probe evaluation of frozen CLIP image encoders."""

from clipprobe.errors import ClipprobeError

__all__ = ["ClipprobeError"]
__version__ = "0.1.0"
