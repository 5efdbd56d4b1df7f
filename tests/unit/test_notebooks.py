"""The notebooks in notebooks/ are executed and must pass."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT


@pytest.mark.slow
def test_monitoring_simulation_notebook_runs_and_its_assertions_hold(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "monitoring_simulation.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any(text.startswith("ok") for text in outputs)
    assert (tmp_path / "monitoring_simulation.png").is_file()
