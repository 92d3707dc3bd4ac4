"""``python -m bench`` (also ``make bench``): see ``bench/run.py`` and README, "Benchmark"."""

import sys

from .run import main

sys.exit(main())
