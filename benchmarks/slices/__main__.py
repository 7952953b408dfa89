import sys

from fewlabel.benchmarks.slices.cli import main

sys.exit(main())
