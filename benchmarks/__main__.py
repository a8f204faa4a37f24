"""`python -m benchmarks` runs the whole suite (see benchmarks/suite.py)."""

from benchmarks.suite import main

main()
