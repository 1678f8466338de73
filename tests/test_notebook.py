"""train.ipynb executes end to end on its tiny generated dataset."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("HUMANMATTING_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("HUMANMATTING_REAL", "0")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    nb = nbformat.read(ROOT / "train.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    assert (tmp_path / "curves.png").is_file() and (tmp_path / "batch.png").is_file()
    assert (tmp_path / "likeunet_night.weights.h5").is_file()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert os.path.exists(tmp_path / "run" / "best.weights.h5")
