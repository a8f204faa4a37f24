"""notebooks/explore.ipynb runs top to bottom headless, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import ray
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore.ipynb"


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_every_cell_runs_headless(ray_session, tmp_path, monkeypatch):
    # The kernel joins the session's Ray, as a notebook joins a cluster (starting Ray is the CLI test's).
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    monkeypatch.setenv("JEWELRY_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("JEWELRY_DASHBOARD", "false")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    figures = {p.name for p in (tmp_path / "out" / "figures").glob("*.png")}
    assert figures == {
        "timeline.png",
        "order_trace.png",
        "throughput.png",
        "stage_latency.png",
        "replica_load.png",
        "design_ring.png",
    }
