"""Every notebook in notebooks/ runs top to bottom in its small setting.

The kernel gets INTERFLOW_NOTEBOOK_QUICK=1, which each notebook's parameter cell reads to
pick small numbers. A cell that raises, including a notebook's own assertion of its key
result, fails the test with the cell's traceback. Notebooks are kept without outputs.
Their shared install cell is run on its own with pip and the import check patched: from
a checkout it installs that checkout; elsewhere it needs REPOSITORY_URL or stops with
how to install.
"""

import glob
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys

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


def _install_cell(path):
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def _run_install_cell(monkeypatch, cwd, url=None, found=None):
    """Run the install cell in `cwd` with REPOSITORY_URL=`url` (unset if None) while
    `importlib.util.find_spec('interflow_jax')` returns `found`; the pip commands it
    would run are returned instead of run."""
    commands = []
    monkeypatch.chdir(cwd)
    if url is None:
        monkeypatch.delenv("REPOSITORY_URL", raising=False)
    else:
        monkeypatch.setenv("REPOSITORY_URL", url)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: found if name == "interflow_jax" else find_spec(name, *args),
    )
    monkeypatch.setattr(subprocess, "check_call", commands.append)
    source = _install_cell(NOTEBOOKS[0]).source
    exec(compile(source, "install cell", "exec"), {"__name__": "__main__"})
    return commands


def _pip_install(target):
    return [sys.executable, "-m", "pip", "install", "-q", target]


def test_every_notebook_has_the_same_install_cell():
    sources = {_install_cell(path).source for path in NOTEBOOKS}
    assert len(sources) == 1 and "REPOSITORY_URL" in sources.pop()


def test_install_cell_installs_the_checkout_it_runs_in(monkeypatch):
    commands = _run_install_cell(monkeypatch, os.path.join(ROOT, "notebooks"))
    assert commands == [_pip_install(ROOT)]


def test_install_cell_finds_a_clone_beside_the_notebook(monkeypatch, tmp_path):
    """Colab's layout: the notebook runs in /content, the clone unzipped beside it; a
    pyproject.toml of another project above is not taken for it."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "another_project"\n')
    content = tmp_path / "content"
    clone = content / "interflow_jax-main"
    clone.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), clone / "pyproject.toml")
    # a folder named like the package on the path is not the package: install anyway
    bare_folder = importlib.machinery.ModuleSpec("interflow_jax", None, is_package=True)
    commands = _run_install_cell(monkeypatch, content, found=bare_folder)
    assert commands == [_pip_install(str(clone))]


def test_install_cell_does_nothing_when_the_package_is_installed(monkeypatch, tmp_path):
    installed = importlib.util.find_spec("interflow_jax")
    assert installed is not None and installed.origin is not None
    assert _run_install_cell(monkeypatch, tmp_path, found=installed) == []


def test_install_cell_without_a_clone_or_url_stops_with_how_to_install(monkeypatch, tmp_path):
    with pytest.raises(ModuleNotFoundError) as raised:
        _run_install_cell(monkeypatch, tmp_path)
    message = str(raised.value)
    for way in ("clone", "python -m build", "%pip install interflow_jax-", "REPOSITORY_URL"):
        assert way in message, way


@pytest.mark.parametrize(
    "url, expected",
    [
        ("file://{tmp}/repo.git", "git+file://{tmp}/repo.git"),
        ("git+file://{tmp}/repo", "git+file://{tmp}/repo"),
        ("file://{tmp}/interflow_jax-0.1.0-py3-none-any.whl", None),
    ],
)
def test_install_cell_installs_from_repository_url(monkeypatch, tmp_path, url, expected):
    """A git address is installed through git+; a wheel's or archive's URL as it is."""
    url = url.format(tmp=tmp_path)
    commands = _run_install_cell(monkeypatch, tmp_path, url=url)
    assert commands == [_pip_install(url if expected is None else expected.format(tmp=tmp_path))]


def test_install_cell_rejects_a_placeholder_url(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="REPOSITORY_URL='<your address>'"):
        _run_install_cell(monkeypatch, tmp_path, url="<your address>")
