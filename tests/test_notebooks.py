"""Every notebook in notebooks/ runs top to bottom in its small setting.

The kernel gets INTERFLOW_NOTEBOOK_QUICK=1, which each notebook's parameter cell reads to
pick small numbers. A cell that raises, including a notebook's own assertion of its key
result, fails the test with the cell's traceback. Notebooks are kept without outputs.
"""

import glob
import os

import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_notebooks():
    names = {os.path.basename(path) for path in NOTEBOOKS}
    expected = {"quickstart", "optimal_interpolant", "score_and_sde", "images"}
    assert {f"{name}.ipynb" for name in expected} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_saved_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:80]
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "INTERFLOW_NOTEBOOK_QUICK" in tagged[0].source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_in_its_small_setting(path, monkeypatch, tmp_path):
    monkeypatch.setenv("INTERFLOW_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
