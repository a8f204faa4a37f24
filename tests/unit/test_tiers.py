"""The quick loop really is Ray-free: `-m "not integration"` leaves out every integration test."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_not_integration_selects_the_unit_tier_alone():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "not integration"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    selected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert selected and all(test.startswith("tests/unit/") for test in selected), selected
    # Modules without a marker of their own (the reliability and autoscaling tests) are left out too.
    integration = sum(
        1
        for path in (REPO / "tests" / "integration").glob("test_*.py")
        for line in path.read_text().splitlines()
        if re.match(r"(async )?def test_", line)
    )
    deselected = int(re.search(r"\((\d+) deselected\)", proc.stdout).group(1))
    assert deselected >= integration > 0
