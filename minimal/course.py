"""python -m minimal.course student OUTDIR: the student version of the course notebooks (tutorials/).

The stored notebooks are the solutions. Each exercise is a code cell whose answer sits between nbgrader's markers

    ### BEGIN SOLUTION
    …
    ### END SOLUTION

with nbgrader metadata {"solution": true, "grade": false, "grade_id": "ex-2-3", …}, followed by a cell that grades
it ({"grade": true, "locked": true, "grade_id": "check-2-3", "points": 1, …}) by calling
minimal.teaching.check("2.3", …). A teacher with nbgrader generates and autogrades from the stored notebooks
directly; this command writes the same student version without nbgrader: every solution region becomes
`raise NotImplementedError("exercise 2.3")` (indented as the region was), outputs and execution counts are
cleared, the nbgrader metadata is removed, and the grading cells are marked not editable and not deletable.

    python -m minimal.course student handout/                        every course notebook
    python -m minimal.course student handout/ --notebooks 00 02      those whose names start with 00 or 02
"""
import copy
import re
import sys
from pathlib import Path

import nbformat

from .cli import OneLineErrorParser, UsageError, check_writable_folder, run_reporting_errors

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_ID = re.compile(r"^ex-(\d+)-(\d+)$")


# ---------------------------------------------------------------------------------------------------- one notebook
def exercise_id(cell):
    """"2.3" for a solution cell whose nbgrader grade_id is "ex-2-3" (ValueError for any other grade_id)."""
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
    match = SOLUTION_ID.match(grade_id)
    if match is None:
        raise ValueError(f"solution cell {grade_id!r} needs a grade_id of the form ex-N-M:\n{cell.source[:200]}")
    return f"{match[1]}.{match[2]}"


def is_solution_cell(cell):
    return cell.metadata.get("nbgrader", {}).get("solution", False)


def is_grading_cell(cell):
    return cell.metadata.get("nbgrader", {}).get("grade", False)


def without_solution(source, exercise):
    """`source` with every BEGIN … END SOLUTION region replaced by `raise NotImplementedError("exercise N.M")`,
    indented as its BEGIN line."""
    lines, inside, result = source.splitlines(), False, []
    for line in lines:
        marker = line.strip()
        if marker == BEGIN and not inside:
            inside = True
            result.append(line[:len(line) - len(line.lstrip())] + f'raise NotImplementedError("exercise {exercise}")')
        elif marker == END and inside:
            inside = False
        elif marker in (BEGIN, END):
            raise ValueError(f"exercise {exercise}: {marker!r} without its partner")
        elif not inside:
            result.append(line)
    if inside:
        raise ValueError(f"exercise {exercise}: {BEGIN!r} without {END!r}")
    return "\n".join(result)


def student_version(notebook):
    """The student version of a solution notebook (a new notebook; the given one is not changed)."""
    student = copy.deepcopy(notebook)
    for cell in student.cells:
        if is_solution_cell(cell):
            if cell.cell_type != "code" or BEGIN not in cell.source:
                raise ValueError(f"solution cell {cell.metadata.nbgrader.get('grade_id')!r} must be a code cell "
                                 f"with a {BEGIN!r} region")
            cell.source = without_solution(cell.source, exercise_id(cell))
        if is_grading_cell(cell):
            cell.metadata.update(editable=False, deletable=False)
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return student


def exercises(notebook):
    """exercise id -> (index of its solution cell, index of its grading cell) in the notebook."""
    cells = {}
    for index, cell in enumerate(notebook.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if is_solution_cell(cell):
            cells.setdefault(exercise_id(cell), [None, None])[0] = index
        elif is_grading_cell(cell) and grade_id.startswith("check-"):
            cells.setdefault(grade_id[len("check-"):].replace("-", "."), [None, None])[1] = index
    incomplete = sorted(name for name, pair in cells.items() if None in pair)
    if incomplete:
        raise ValueError(f"exercises without a solution cell or without a grading cell: {', '.join(incomplete)}")
    return {name: tuple(pair) for name, pair in cells.items()}


# ---------------------------------------------------------------------------------------------------- the command
def course_notebooks(folder=TUTORIALS):
    """The notebooks of `folder` that hold exercises, sorted by name."""
    return [path for path in sorted(Path(folder).glob("*.ipynb"))
            if any(is_solution_cell(cell) for cell in nbformat.read(path, as_version=4).cells)]


def chosen_notebooks(folder, prefixes):
    """The course notebooks whose names start with one of `prefixes` (all of them without prefixes)."""
    available = course_notebooks(folder)
    if not available:
        raise UsageError(f"no course notebooks (notebooks with exercises) in {folder}; pass --tutorials")
    for prefix in prefixes or ():
        if not any(path.name.startswith(prefix) for path in available):
            raise UsageError(f"no course notebook in {folder} starts with {prefix!r}; choose from "
                             f"{', '.join(path.stem for path in available)}")
    return [path for path in available if not prefixes or any(path.name.startswith(p) for p in prefixes)]


def write_student_versions(out, folder=TUTORIALS, prefixes=None):
    """Write the student version of the chosen notebooks into `out`; return the paths written."""
    if Path(out).resolve() == Path(folder).resolve():
        raise UsageError(f"OUTDIR {out} is the tutorials folder itself: that would overwrite the solutions")
    notebooks = chosen_notebooks(folder, prefixes)
    check_writable_folder(out, "OUTDIR")
    Path(out).mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = Path(out) / path.name
        nbformat.write(student_version(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def parse_arguments(argv):
    parser = OneLineErrorParser(prog="python -m minimal.course",
                                description="Course notebooks: write the student version (exercises emptied).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    student = commands.add_parser("student", help="write the student version of the course notebooks")
    student.add_argument("out", metavar="OUTDIR", help="folder for the student notebooks (created if needed)")
    student.add_argument("--notebooks", nargs="+", metavar="PREFIX",
                         help="only the notebooks whose names start with these (e.g. 00 02); default: all")
    student.add_argument("--tutorials", default=str(TUTORIALS),
                         help=f"the folder of the solution notebooks (default: {TUTORIALS})")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)

    def body():
        for path in write_student_versions(arguments.out, arguments.tutorials, arguments.notebooks):
            print(f"wrote {path}")
    return run_reporting_errors(body, "nothing is lost; run the command again", expected=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
