"""The course: the student version of a notebook (minimal/course.py), its command line, and the graders
(minimal/teaching/), each of which must fail a wrong answer with a message that says what is wrong."""
import re

import numpy as np
import nbformat
import pytest

from minimal.autodiff import Tensor, ops
from minimal.autodiff.tensor import accumulate_grad
from minimal.cli import EXIT_USAGE
from minimal.course import TUTORIALS, course_notebooks, exercises, main, student_version
from minimal.robust.methods import METHODS
from minimal.teaching import ExerciseFailed, check, exercise_ids


def solution_notebook():
    """A notebook of two exercises: 1.1 (a function) and 1.2 (an expression), each with its grading cell."""
    def cell(source, grade_id, **nbgrader):
        code = nbformat.v4.new_code_cell(source, execution_count=1,
                                         outputs=[nbformat.v4.new_output("stream", text="out\n")])
        code.metadata["nbgrader"] = {"grade_id": grade_id, "schema_version": 3, **nbgrader}
        return code
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A notebook"),
        cell("def double(x):\n    ### BEGIN SOLUTION\n    y = 2 * x\n    return y\n    ### END SOLUTION\n",
             "ex-1-1", solution=True, grade=False, locked=False),
        cell('check("1.1", double)', "check-1-1", solution=False, grade=True, locked=True, points=1),
        cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nprint(answer)", "ex-1-2", solution=True,
             grade=False, locked=False),
        cell('check("1.2", answer)', "check-1-2", solution=False, grade=True, locked=True, points=1),
        nbformat.v4.new_code_cell("print('no exercise')", execution_count=5)])


# ---------------------------------------------------------------------------------------------------- transformation
def test_student_version_replaces_each_solution_region_with_its_own_error():
    student = student_version(solution_notebook())
    assert student.cells[1].source == 'def double(x):\n    raise NotImplementedError("exercise 1.1")'
    assert student.cells[3].source == 'raise NotImplementedError("exercise 1.2")\nprint(answer)'
    assert student.cells[2].source == 'check("1.1", double)'


def test_student_version_strips_outputs_and_nbgrader_and_locks_the_grading_cells():
    original = solution_notebook()
    student = student_version(original)
    code = [cell for cell in student.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert not any("nbgrader" in cell.metadata for cell in student.cells)
    assert student.cells[2].metadata["editable"] is False and student.cells[2].metadata["deletable"] is False
    assert "editable" not in student.cells[1].metadata
    assert original.cells[1].outputs and "BEGIN SOLUTION" in original.cells[1].source  # the input is untouched
    nbformat.validate(student)


def test_exercises_pairs_solution_and_grading_cells():
    assert exercises(solution_notebook()) == {"1.1": (1, 2), "1.2": (3, 4)}
    lonely = solution_notebook()
    del lonely.cells[2]
    with pytest.raises(ValueError, match="1.1"):
        exercises(lonely)


@pytest.mark.parametrize("source, message", [("### BEGIN SOLUTION\nx = 1\n", "without"),
                                             ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n### END SOLUTION\n",
                                              "without its partner")])
def test_unbalanced_markers_are_refused(source, message):
    notebook = solution_notebook()
    notebook.cells[3].source = source
    with pytest.raises(ValueError, match=message):
        student_version(notebook)


def test_a_solution_cell_needs_an_exercise_grade_id():
    notebook = solution_notebook()
    notebook.cells[1].metadata["nbgrader"]["grade_id"] = "double"
    with pytest.raises(ValueError, match="ex-N-M"):
        student_version(notebook)


# ---------------------------------------------------------------------------------------------------- command line
def test_command_writes_the_chosen_student_notebooks(tmp_path, capsys):
    tutorials = tmp_path / "tutorials"
    tutorials.mkdir()
    nbformat.write(solution_notebook(), tutorials / "01_first.ipynb")
    nbformat.write(solution_notebook(), tutorials / "02_second.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tutorials / "03_no_exercises.ipynb")
    assert main(["student", str(tmp_path / "out"), "--tutorials", str(tutorials), "--notebooks", "02"]) == 0
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["02_second.ipynb"]
    student = nbformat.read(tmp_path / "out" / "02_second.ipynb", as_version=4)
    assert 'NotImplementedError("exercise 1.1")' in student.cells[1].source
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["--notebooks", "07"], "no course notebook in"),
    (["--tutorials", "{tmp}/nowhere"], "no course notebooks"),
])
def test_command_errors_are_one_line(tmp_path, capsys, arguments, message):
    nbformat.write(solution_notebook(), tmp_path / "01_first.ipynb")
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    assert main(["student", str(tmp_path / "out"), "--tutorials", str(tmp_path), *arguments]) == EXIT_USAGE
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


def test_command_refuses_to_overwrite_the_solutions(capsys):
    assert main(["student", str(TUTORIALS)]) == EXIT_USAGE
    assert "overwrite the solutions" in capsys.readouterr().err


def test_command_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["teacher", "out"])
    assert exit_info.value.code == EXIT_USAGE
    assert capsys.readouterr().err.count("\n") == 1


# ---------------------------------------------------------------------------------------------------- the course
def test_every_course_notebook_has_three_graded_exercises_of_its_own_number():
    notebooks = course_notebooks()
    assert notebooks, f"no course notebooks in {TUTORIALS}"
    for path in notebooks:
        found = exercises(nbformat.read(path, as_version=4))
        assert len(found) >= 3, f"{path.name} has {len(found)} exercises"
        assert all(name.split(".")[0] == str(int(path.name[:2])) for name in found), (path.name, sorted(found))
        assert set(found) <= set(exercise_ids()), f"{path.name}: exercises without a grader"


# ---------------------------------------------------------------------------------------------------- graders
def wrong_tanh_backward(a):
    def backward(g):
        accumulate_grad(a, g * (1 - np.tanh(a.data)))
    return Tensor.from_op(np.tanh(a.data), (a,), backward, "tanh")


def tanh_assigning_grad(a):
    out = np.tanh(a.data)

    def backward(g):
        a.grad = g * (1 - out ** 2)
    return Tensor.from_op(out, (a,), backward, "tanh")


class Node:
    """A scalar node as the notebook's: value, op label, parents."""
    def __init__(self, value, parents=(), op=""):
        self.value, self._parents, self.op = value, parents, op

    def __add__(self, other):
        return Node(self.value + other.value, (self, other), "+")

    def __mul__(self, other):
        return Node(self.value * other.value, (self, other), "*")


def post_order_without_visited_set(root):
    return [node for parent in root._parents for node in post_order_without_visited_set(parent)] + [root]


def beta_step_without_robust_loss(model, x, y, rng, beta_rob):
    return METHODS["standard"](model, x, y, rng, {})


def accuracy_without_attack(model, split, zeta, seed):
    from minimal.metrics import accuracy
    return accuracy(model, split)


def shifted_in_place(theta, direction, alpha):
    for name in theta:
        theta[name] += alpha * direction[name]
    return theta


WRONG_ANSWERS = [
    ("0.1", (post_order_without_visited_set, Node), "listed twice"),
    ("0.2", (lambda grad, shape: grad.sum(axis=tuple(range(grad.ndim - len(shape)))),), "size-1 axes"),
    ("0.3", (wrong_tanh_backward,), "1 − tanh(a)²"),
    ("0.3", (tanh_assigning_grad,), "never assign"),
    ("0.4", (lambda x, w: ops.conv2d(Tensor(x), Tensor(w[:, :, ::-1, ::-1].copy())).data,), "flipped"),
    ("1.1", (lambda theta, zeta, rng: {name: v + np.float32(zeta) * rng.standard_normal(v.shape).astype(v.dtype)
                                       for name, v in theta.items()},), "Θ = 0 moved"),
    ("1.1", (lambda theta, zeta, rng: {name: (v * (1 + zeta * rng.standard_normal(v.shape))) for name, v in
                                       theta.items()},), "float32"),
    ("1.2", (lambda a: {"mean": 100 * a.mean(), "std": 100 * a.std(ddof=1), "min": 100 * a.min()},), "ddof=0"),
    ("1.3", (lambda params, c: {name: c * value for name, value in params.items()},), "conv2.bias"),
    ("2.1", (lambda p, q: METHODS and _kl(q, p),), "swapped"),
    ("2.2", (lambda star, theta, g, zeta, n: star + zeta * np.abs(theta) / n * np.sign(g),), "no projection"),
    ("2.3", (lambda theta, r, s, eps, zeta, n: 1 + eps * r + zeta / n * s,), "sign(Θ) is missing"),
    ("3.1", (lambda direct, jacobian, at_star: {k: direct[k] + at_star[k] for k in direct},), "J is forgotten"),
    ("3.2", (beta_step_without_robust_loss,), "L_nat alone"),
    ("3.3", (accuracy_without_attack,), "clean accuracy"),
    ("4.1", (lambda theta, eta, rng: {k: v + eta * rng.standard_normal(v.shape) for k, v in theta.items()},),
     "constant noise"),
    ("4.2", (lambda vector, radius: np.clip(vector, -radius, radius),), "l∞ box"),
    ("4.3", (lambda theta, g, rho: {k: theta[k] + rho * g[k] / np.sqrt(np.sum(g[k] ** 2)) for k in theta},),
     "one norm per tensor"),
    ("5.1", (lambda v, x, z, threshold, w_in, w_rec, rho: rho * v + (1 - rho) * (x @ w_in + z @ w_rec),),
     "the reset is missing"),
    ("5.1", (lambda v, x, z, threshold, w_in, w_rec, rho: rho * v + (1 - rho) * (x @ w_in + z @ w_rec.T)
             - z * threshold,), "W_rec is transposed"),
    ("5.2", (lambda b, z, rho, b0, beta: (rho * b + (1 - rho) * z, beta * (rho * b + (1 - rho) * z)),),
     "b0 is missing"),
    ("5.2", (lambda b, z, rho, b0, beta: (rho * b + z, b0 + beta * (rho * b + z)),), "not scaled by (1 − ρ_b)"),
    ("5.3", (lambda v, threshold, allowed, d: d * np.maximum(1 - np.abs((v - threshold) / threshold), 0),),
     "refractory mask is missing"),
    ("5.4", (lambda e, dv_next, db_next, psi, threshold, w_rec, rho_v, rho_b:
             rho_v * dv_next + psi * (e + (1 - rho_v) * dv_next @ w_rec.T + (1 - rho_b) * db_next),),
     "the reset is missing from ∂E/∂z_t"),
    ("5.4", (lambda e, dv_next, db_next, psi, threshold, w_rec, rho_v, rho_b:
             psi * (e + (1 - rho_v) * dv_next @ w_rec.T - threshold * dv_next + (1 - rho_b) * db_next),),
     "the leak is missing"),
    ("6.1", (lambda per_instance: {z: np.stack([i[z] for i in per_instance]) for z in per_instance[0]},),
     "np.stack"),
    ("6.2", (lambda a, b: float(np.sum(a[:, None] > b[None, :])),), "ties are left out"),
    ("6.3", (lambda accuracies, spec: float(np.mean(accuracies > spec)),), "≥, not >"),
    ("7.1", (lambda theta, zeta, rng: {k: (zeta * rng.standard_normal(v.shape)).astype(v.dtype)
                                       for k, v in theta.items()},), "|Θ| is missing"),
    ("7.2", (shifted_in_place,), "Θ itself was changed"),
    ("7.3", (lambda alphas, losses: float(np.mean(np.diff(losses) / np.diff(alphas))),), "|ΔL| is missing"),
    ("8.1", (lambda a_lo, a_hi, b_lo, b_hi: (a_lo * b_lo, a_hi * b_hi),), "only when both intervals are ≥ 0"),
    ("8.2", (lambda lo, hi: (np.zeros_like(lo), np.maximum(hi, 0)),), "sound but loose"),
    ("8.3", (lambda lower, upper, labels: lower[np.arange(len(labels)), labels] > upper.max(axis=1),),
     "its own upper bound"),
    ("9.1", (lambda g: np.maximum(-1.1731 * g ** 2 + 1.9650 * g + 0.2635, 0),), "normalised conductance"),
    ("9.2", (lambda g, nu, t: g * (np.maximum(t, 1e-9) / 20.0) ** (-nu),), "time since programming"),
    ("9.3", (lambda g_d, g_t, t: g_d * np.minimum(0.0088 / (g_t / 25.0) ** 0.65, 0.2)
             * np.log((20.0 + t + 250e-9) / 250e-9),), "square root"),
]


def _kl(p_logits, q_logits):
    p, q = (np.exp(z - z.max(1, keepdims=True)) for z in (p_logits, q_logits))
    p, q = p / p.sum(1, keepdims=True), np.clip(q / q.sum(1, keepdims=True), 1e-6, 1)
    return float(np.mean(np.sum(p * (np.log(np.clip(p, 1e-6, 1)) - np.log(q)), axis=1)))


@pytest.mark.parametrize("exercise, answer, message", WRONG_ANSWERS, ids=lambda value: str(value)[:20])
def test_a_grader_fails_a_wrong_answer_saying_what_is_wrong(exercise, answer, message):
    with pytest.raises(ExerciseFailed, match=f"exercise {re.escape(exercise)}: .*{re.escape(message)}") as failure:
        check(exercise, *answer)
    print(failure.value)


def test_every_grader_is_tested_with_a_wrong_answer():
    assert set(exercise_ids()) <= {exercise for exercise, _, _ in WRONG_ANSWERS}


def test_the_student_stub_error_passes_through_the_grader():
    def stub(*arguments):
        raise NotImplementedError("exercise 2.1")
    with pytest.raises(NotImplementedError, match="exercise 2.1"):
        check("2.1", stub)


def test_an_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="no exercise '9.9'"):
        check("9.9", None)
