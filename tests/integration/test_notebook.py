"""notebooks/explore.ipynb runs top to bottom headless, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore.ipynb"


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_every_cell_runs_headless(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the kernel starts its own local Ray
    monkeypatch.setenv("JEWELRY_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("JEWELRY_DASHBOARD", "false")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    figures = {p.name for p in (tmp_path / "out" / "figures").glob("*.png")}
    assert figures == {"timeline.png", "throughput.png", "stage_latency.png", "replica_load.png", "design_ring.png"}
