"""The tutorial notebooks run from the first cell to the last without an error.

Each notebook is executed in memory (the file on disk keeps its stored outputs) by a fresh Python kernel whose
working directory is a temporary folder, so a notebook cannot lean on files left behind by an earlier run. Those
that train on real Fashion-MNIST are skipped where it is not installed, as the loader's own tests are.

The course notebooks (those with exercises, minimal/course.py) are checked twice: the stored solution executes and
prints the same text as stored (every stream output, except the lines marked ⏱, which are timings; a printed number
may differ by LAST_DIGIT_TOLERANCE units of its last digit, see same_printout), and its
student version (python -m minimal.course student) fails each exercise with `NotImplementedError: exercise N.M`
of that exercise, in its solution cell or in its grading cell. The student version runs only up to its last
grading cell: what follows holds no exercise, and running it would double the cost of the test.

The executions are started together by one fixture and run two at a time (see `executed`); each test waits for
the one it checks.
"""
import re
from concurrent.futures import ThreadPoolExecutor
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
# float32 sums are ordered by the SIMD width of the processor (numba compiles for the host, OpenBLAS picks its kernel
# by it), so a number after hundreds of training steps may round differently on another machine of the same kind:
# seen, one unit of the last digit (KL 2.08e-06 / 2.09e-06, chip accuracy 79.8 ± 1.8 / 79.7 ± 1.9 %)
LAST_DIGIT_TOLERANCE = 2
NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(?:e([-+]?\d+))?")


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


def lacks_its_fmnist(path):
    """True when the notebook uses Fashion-MNIST and it is not installed here."""
    uses_fmnist = any("load_fmnist(" in cell.source or "load_course_data(" in cell.source
                      for cell in nbformat.read(path, as_version=4).cells)
    return uses_fmnist and not fmnist_installed()


def skip_without_fmnist(path):
    if lacks_its_fmnist(path):
        pytest.skip(f"{path.name} uses Fashion-MNIST, which is not installed")


def execute(notebook, folder, allow_errors=False):
    """Execute `notebook` in a fresh kernel working in `folder`; raises CellExecutionError, naming the cell and
    its traceback, if a cell fails (unless allow_errors)."""
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name="python3",
                                     allow_errors=allow_errors, resources={"metadata": {"path": str(folder)}})
    client.execute()
    return notebook


def student_notebook_to_last_grading_cell(path):
    """The student version of a course notebook, up to its last grading cell: what follows holds no exercise."""
    stored = nbformat.read(path, as_version=4)
    last_grading_cell = max(index for index, cell in enumerate(stored.cells) if is_grading_cell(cell))
    student = student_version(stored)
    student.cells = student.cells[:last_grading_cell + 1]
    return student


def run_job(kind, path, folder):
    """One execution: the stored notebook ("solution") or its student version ("student")."""
    if lacks_its_fmnist(path):
        return None                                  # its test skips
    if kind == "student":
        return execute(student_notebook_to_last_grading_cell(path), folder, allow_errors=True)
    return execute(nbformat.read(path, as_version=4), folder)


# which execution each test of this file waits for
JOB_OF_TEST = {"test_notebook_runs_without_errors": "solution",
               "test_course_notebook_prints_the_stored_numbers": "solution",
               "test_student_version_fails_each_exercise_with_its_own_message": "student"}


@pytest.fixture(scope="module")
def executed(request, tmp_path_factory):
    """(kind, path) -> Future of the executed notebook, for every execution the selected tests of this file need,
    all submitted at once and run two at a time, in the order of the tests.

    Each kernel runs numba and BLAS on one thread: the tutorials' small networks gain nothing from two, and on
    cores shared with other jobs a parallel loop waiting for its second thread made them ten times slower. The test
    process itself only waits, so two kernels at a time use both cores of a 2-core machine (CI): the ~10 minutes
    that the notebooks take one after another become about half."""
    jobs = [(JOB_OF_TEST[item.originalname], item.callspec.params["path"]) for item in request.session.items
            if item.module is request.module and item.originalname in JOB_OF_TEST]
    with single_threaded_children(), ThreadPoolExecutor(max_workers=2) as pool:
        futures = {job: pool.submit(run_job, *job, tmp_path_factory.mktemp(job[0]))
                   for job in dict.fromkeys(jobs)}
        yield futures
        pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("path", OTHER_NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_without_errors(path, executed):
    skip_without_fmnist(path)
    notebook = executed["solution", path].result()
    assert all(cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")


def printed_text(cell):
    """What a code cell printed (its stream outputs), without the timing lines."""
    text = "".join(output.text for output in cell.get("outputs", []) if output.output_type == "stream")
    return [line for line in text.splitlines() if TIMING_MARK not in line]


def same_printout(printed, stored):
    """The same lines with the same words; each number as stored, or off by at most LAST_DIGIT_TOLERANCE units of
    the last digit it is printed with."""
    return len(printed) == len(stored) and all(same_line(new, old) for new, old in zip(printed, stored))


def same_line(printed, stored):
    if NUMBER.sub("#", printed) != NUMBER.sub("#", stored):
        return False
    for new, old in zip(NUMBER.finditer(printed), NUMBER.finditer(stored)):
        decimals, exponent = len(old.group(1) or ""), int(old.group(2) or 0)
        if abs(float(new.group()) - float(old.group())) > LAST_DIGIT_TOLERANCE * 10.0 ** (exponent - decimals):
            return False
    return True


def test_a_printout_may_differ_in_the_last_digit_only():
    assert same_printout(["KL 2.09e-06 0.0347", "79.7 ± 1.9 %"], ["KL 2.08e-06 0.0347", "79.8 ± 1.8 %"])
    assert not same_printout(["KL 2.12e-06"], ["KL 2.08e-06"])
    assert not same_printout(["79.4 ± 1.8 %"], ["79.8 ± 1.8 %"])
    assert not same_printout(["accuracy 79.8 %"], ["accuracy 79.8"])
    assert not same_printout(["0.5", "1"], ["0.5"])


@pytest.mark.parametrize("path", COURSE_NOTEBOOKS, ids=lambda path: path.name)
def test_course_notebook_prints_the_stored_numbers(path, executed):
    skip_without_fmnist(path)
    stored = nbformat.read(path, as_version=4)
    executed_notebook = executed["solution", path].result()
    for number, (old, new) in enumerate(zip(stored.cells, executed_notebook.cells)):
        if old.cell_type == "code":
            stored_lines, printed_lines = printed_text(old), printed_text(new)
            assert same_printout(printed_lines, stored_lines), \
                f"{path.name}, cell {number}:\n{old.source[:300]}\nstored:  {stored_lines}\nprinted: {printed_lines}"


@pytest.mark.parametrize("path", COURSE_NOTEBOOKS, ids=lambda path: path.name)
def test_student_version_fails_each_exercise_with_its_own_message(path, executed):
    skip_without_fmnist(path)
    pairs = exercises(nbformat.read(path, as_version=4))
    student = executed["student", path].result()
    for exercise, cells in pairs.items():
        errors = [output for index in cells for output in student.cells[index].outputs
                  if output.output_type == "error"]
        assert errors, f"{path.name}: exercise {exercise} raised no error in the student version"
        assert (errors[0].ename, errors[0].evalue) == ("NotImplementedError", f"exercise {exercise}"), \
            f"{path.name}: exercise {exercise} failed with {errors[0].ename}: {errors[0].evalue}"
