"""`python -m clipprobe`: the `clipprobe` command without its console script."""

import sys

from clipprobe.report.cli import main

sys.exit(main())
