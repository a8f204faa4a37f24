"""Under `run --json` stdout holds the answer alone, whatever else the process writes to it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

SNIPPET = """
import os, sys
from orchestration.cli.terminal import reserve_stdout, write_answer
print("before")
reserve_stdout()
print("a log line, as Ray forwards them")
os.write(1, b"written to the file descriptor\\n")
write_answer('{"completed": 3}')
sys.stdout.write("after the answer, as at exit\\n")
"""


def test_after_reserving_stdout_only_the_answer_reaches_it_and_the_rest_goes_to_stderr():
    proc = subprocess.run(
        [sys.executable, "-c", SNIPPET], capture_output=True, text=True, cwd=REPO, timeout=60, check=True
    )
    before, answer = proc.stdout.splitlines()
    assert before == "before" and json.loads(answer) == {"completed": 3}
    assert proc.stderr.splitlines() == [
        "a log line, as Ray forwards them",
        "written to the file descriptor",
        "after the answer, as at exit",
    ]
