"""clipprobe: linear-probe evaluation of frozen image encoders, as a DVC pipeline."""

import os

__version__ = "0.2.0"

# torch's OpenMP threads spin while they wait for work by default, taking the CPU from whatever
# shares the machine: two queued experiments, or other jobs, on 2 cores made a 1000-class C search
# 5x slower (bench/search.py); waiting threads that sleep cost microseconds per parallel region.
# It only acts when set before torch is first imported; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
