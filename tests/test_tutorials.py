"""The tutorial notebooks run from the first cell to the last without an error.

Each notebook is executed in memory (the file on disk keeps its stored outputs) by a fresh Python kernel whose
working directory is a temporary folder, so a notebook cannot lean on files left behind by an earlier run. Those
that train on real Fashion-MNIST are skipped where it is not installed, as the loader's own tests are.

The course notebooks (those with exercises, minimal/course.py) are checked twice: the stored solution executes and
prints the same text as stored (every stream output, except the lines marked ⏱, which are timings), and its
student version (python -m minimal.course student) fails each exercise with `NotImplementedError: exercise N.M`
of that exercise, in its solution cell or in its grading cell. The student version runs only up to its last
grading cell: what follows holds no exercise, and running it would double the cost of the test.
"""
from pathlib import Path

import nbclient
import nbformat
import pytest

from minimal.course import course_notebooks, exercises, is_grading_cell, student_version
from minimal.data.common import DataNotFoundError
from minimal.data.fmnist import find_fmnist_dir
from minimal.evaluate.cells import single_threaded_children

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
COURSE_NOTEBOOKS = course_notebooks(TUTORIALS)
OTHER_NOTEBOOKS = [path for path in NOTEBOOKS if path not in COURSE_NOTEBOOKS]
TIMING_MARK = "⏱"
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


def execute(notebook, path, folder, allow_errors=False):
    """Execute `notebook` (read from `path`) in a fresh single-threaded kernel working in `folder`; skip the test
    when it needs Fashion-MNIST and that is not installed."""
    if any("load_fmnist(" in cell.source or "load_course_data(" in cell.source for cell in notebook.cells) \
            and not fmnist_installed():
        pytest.skip(f"{path.name} uses Fashion-MNIST, which is not installed")
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3",
                                     allow_errors=allow_errors, resources={"metadata": {"path": str(folder)}})
    # The kernel runs numba and BLAS on one thread: the tutorials' small networks gain nothing from two, and on
    # cores shared with other jobs a parallel loop waiting for its second thread made them ten times slower.
    with single_threaded_children():
        client.execute()  # raises CellExecutionError, naming the cell and its traceback, if any cell fails
    return notebook


@pytest.mark.parametrize("path", OTHER_NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_without_errors(path, tmp_path):
    notebook = execute(nbformat.read(path, as_version=4), path, tmp_path)
    assert all(cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")


def printed_text(cell):
    """What a code cell printed (its stream outputs), without the timing lines."""
    text = "".join(output.text for output in cell.get("outputs", []) if output.output_type == "stream")
    return [line for line in text.splitlines() if TIMING_MARK not in line]


@pytest.mark.parametrize("path", COURSE_NOTEBOOKS, ids=lambda path: path.name)
def test_course_notebook_prints_the_stored_numbers(path, tmp_path):
    stored = nbformat.read(path, as_version=4)
    executed = execute(nbformat.read(path, as_version=4), path, tmp_path)
    for number, (old, new) in enumerate(zip(stored.cells, executed.cells)):
        if old.cell_type == "code":
            assert printed_text(new) == printed_text(old), f"{path.name}, cell {number}:\n{old.source[:300]}"


@pytest.mark.parametrize("path", COURSE_NOTEBOOKS, ids=lambda path: path.name)
def test_student_version_fails_each_exercise_with_its_own_message(path, tmp_path):
    student = student_version(nbformat.read(path, as_version=4))
    pairs = exercises(nbformat.read(path, as_version=4))
    last_grading_cell = max(index for index, cell in enumerate(nbformat.read(path, as_version=4).cells)
                            if is_grading_cell(cell))
    student.cells = student.cells[:last_grading_cell + 1]
    executed = execute(student, path, tmp_path, allow_errors=True)
    for exercise, cells in pairs.items():
        errors = [output for index in cells for output in executed.cells[index].outputs
                  if output.output_type == "error"]
        assert errors, f"{path.name}: exercise {exercise} raised no error in the student version"
        assert (errors[0].ename, errors[0].evalue) == ("NotImplementedError", f"exercise {exercise}"), \
            f"{path.name}: exercise {exercise} failed with {errors[0].ename}: {errors[0].evalue}"
