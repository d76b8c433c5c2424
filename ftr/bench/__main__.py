"""`python -m ftr.bench` (what `make bench` runs): the training throughput benchmark, ftr.bench.train."""

import sys

from ftr.bench.train import main

sys.exit(main())
