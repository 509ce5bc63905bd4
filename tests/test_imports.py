"""The import structure of minimal/ (DESIGN.md §1): no import circles, and no library module imports a
command-line module.

Each module's source is parsed with `ast` (nothing is imported), its imports are resolved to modules of the
package (relative ones too), and the graph "module -> the modules it imports" must have no circle. Only the imports
that run when the module is loaded count: those at module level (also inside if/try blocks and class bodies), not
those inside functions, which run when the function is called, after every module is loaded (tensor.py's
operators import ops.py that way).
"""
import ast
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parent.parent / "minimal"
COMMAND_LINE_MODULES = ("minimal.train", "minimal.evaluate", "minimal.sweep", "minimal.bench", "minimal.course")


def module_name(path):
    """minimal/nn/cnn.py -> "minimal.nn.cnn"; minimal/nn/__init__.py -> "minimal.nn"."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules():
    """name -> path of every module of minimal/."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def import_statements(tree, at_load_only):
    """The Import/ImportFrom nodes of a module; with at_load_only, not those inside functions."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not (at_load_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
            stack.extend(ast.iter_child_nodes(node))


def imported_modules(node, importer, path, modules):
    """The modules of the package that one import statement of `importer` (a module at `path`) loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if node.level:                                          # relative: `from . import x`, `from ..kernels import y`
        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = ".".join(part for part in (package, node.module) if part)
    else:
        base = node.module
    submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
    return submodules + ([base] if base in modules else [])


def with_parent_packages(target, importer):
    """Loading a.b.c first loads packages a and a.b; those that contain the importer are loaded already."""
    parts = target.split(".")
    names = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [name for name in names if not (importer == name or importer.startswith(name + "."))]


def import_graph(at_load_only=True):
    """module -> set of the package's modules that it imports."""
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {loaded for node in import_statements(tree, at_load_only)
                       for target in imported_modules(node, name, path, modules)
                       for loaded in with_parent_packages(target, name)}
    return graph


def find_circle(graph):
    """A list [a, b, …, a] of modules that import each other in a circle, or None (iterative depth-first search)."""
    done, on_path = set(), []
    for start in graph:
        if start in done:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        on_path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:                               # every import of node explored: no circle through it
                stack.pop()
                on_path.pop()
                done.add(node)
            elif child in on_path:
                return on_path[on_path.index(child):] + [child]
            elif child not in done:
                stack.append((child, iter(sorted(graph.get(child, ())))))
                on_path.append(child)
    return None


# ------------------------------------------------------------------------------------------- the checker itself
def test_find_circle_finds_a_circle_and_only_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"b", "c"}}) is None
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"a"}}) == ["a", "a"]


def test_imports_are_resolved_relative_imports_included():
    graph = import_graph()
    assert {"minimal.autodiff.tensor", "minimal.kernels", "minimal.kernels.conv"} <= graph["minimal.autodiff.ops"]
    assert "minimal.autodiff.ops" in graph["minimal.autodiff"]                     # `from . import ops`
    assert "minimal.autodiff.ops" not in graph["minimal.autodiff.tensor"]          # imported inside a function
    assert "minimal.autodiff.ops" in import_graph(at_load_only=False)["minimal.autodiff.tensor"]


# ------------------------------------------------------------------------------------------- the package
def test_no_import_circles():
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_no_library_module_imports_a_command_line_module():
    """DESIGN.md §1: data flows one way; train, evaluate, sweep, bench and course are only ever imported by
    themselves and by tests (here every import counts, also those inside functions)."""
    def is_command_line(name):
        return any(name == cli or name.startswith(cli + ".") for cli in COMMAND_LINE_MODULES)

    offending = {module: sorted(filter(is_command_line, imported))
                 for module, imported in import_graph(at_load_only=False).items()
                 if not is_command_line(module) and any(map(is_command_line, imported))}
    assert not offending, f"library modules importing command-line modules: {offending}"
