"""clipprobe: linear-probe evaluation of frozen image encoders, as a DVC pipeline."""

__version__ = "0.1.0"
