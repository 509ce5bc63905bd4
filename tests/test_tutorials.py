"""The tutorial notebooks run from the first cell to the last without an error.

Each notebook is executed in memory (the file on disk keeps its stored outputs) by a fresh Python kernel whose
working directory is a temporary folder, so a notebook cannot lean on files left behind by an earlier run. Those
that train on real Fashion-MNIST are skipped where it is not installed, as the loader's own tests are.
"""
from pathlib import Path

import nbclient
import nbformat
import pytest

from minimal.data.common import DataNotFoundError
from minimal.data.fmnist import find_fmnist_dir
from minimal.evaluate.cells import single_threaded_children

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
CELL_TIMEOUT_SECONDS = 900


def fmnist_installed():
    try:
        find_fmnist_dir()
    except DataNotFoundError:
        return False
    return True


def test_there_are_tutorials():
    assert NOTEBOOKS, f"no notebooks found in {TUTORIALS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_with_its_outputs(path):
    """tutorials/README.md promises notebooks that can be read without running them: every code cell was
    executed, in order, without an error, and the last one shows its result."""
    code_cells = [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    assert [cell.get("execution_count") for cell in code_cells] == list(range(1, len(code_cells) + 1))
    kinds = [{output.output_type for output in cell.outputs} for cell in code_cells]
    assert not any("error" in cell_kinds for cell_kinds in kinds), f"{path.name} was stored with an error"
    assert kinds[-1] & {"stream", "display_data", "execute_result"}, f"the last cell of {path.name} shows nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_without_errors(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    if any("load_fmnist(" in cell.source for cell in notebook.cells) and not fmnist_installed():
        pytest.skip(f"{path.name} trains on Fashion-MNIST, which is not installed")
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # The kernel runs numba and BLAS on one thread: the tutorials' small networks gain nothing from two, and on
    # cores shared with other jobs a parallel loop waiting for its second thread made them ten times slower.
    with single_threaded_children():
        client.execute()  # raises CellExecutionError, naming the cell and its traceback, if any cell fails
    assert all(cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")
