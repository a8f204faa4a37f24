"""`python -m orchestration run ...` is the same program as the `jewelry-fanout` script."""

import sys

from orchestration.cli import main

sys.exit(main())
