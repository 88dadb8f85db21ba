"""The house rules that keep the code legible (docs/design.md, "Layout"): no module of fastmi, its kernels
or bench takes another module's underscore names, and no two modules import each other, at any depth."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"fastmi": ROOT / "fastmi", "fastmi.kernels": ROOT / "kernels", "bench": ROOT / "bench"}


def modules():
    """{dotted name: path} of every project module (kernels/ is installed as fastmi.kernels)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def package_of(name, path):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported(name, path):
    """[(lineno, target module, imported names or None)] of every import of a project module in the file,
    function-level ones included; `from pkg import sub` counts as importing the module pkg.sub."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = package_of(name, path)
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            base = "fastmi.kernels" + base[len("kernels"):] if base.split(".")[0] == "kernels" else base
            if base not in MODULES:
                continue
            plain = [a.name for a in node.names if f"{base}.{a.name}" not in MODULES]
            found += [(node.lineno, f"{base}.{a.name}", None) for a in node.names if f"{base}.{a.name}" in MODULES]
            if plain:
                found.append((node.lineno, base, plain))
    return found


def private_reaches(name, path):
    """'line: what' for each underscore name of another project module that the file takes: imported by
    name, or read as an attribute of a project module it imported."""
    tree = ast.parse(path.read_text())
    module_names, reaches = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) or isinstance(node, ast.Import):
            for a in node.names:
                module_names.add((a.asname or a.name).split(".")[0])
    project_names = set()
    for lineno, target, names in imported(name, path):
        if names is None:
            project_names.add(target.rpartition(".")[2])
            project_names.add(target.split(".")[0])
        else:
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            reaches += [f"{lineno}: from {target} import {n}" for n in private]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in project_names & module_names:
                reaches.append(f"{node.lineno}: {ast.unparse(node)}")
    return reaches


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_takes_another_modules_private_names(name):
    assert private_reaches(name, MODULES[name]) == []


def test_the_private_name_check_sees_both_kinds_of_reach(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("from .api import _validated\nfrom .estimators import kde_torch\nx = kde_torch._tiles\n"
                    "import torch\ny = torch._C\n")
    assert private_reaches("fastmi.probe", path) == ["1: from fastmi.api import _validated", "3: kde_torch._tiles"]


def import_graph():
    """{module: {project modules it imports}}, a package's own submodules left out of its edges (an
    __init__ that re-exports is not a circle)."""
    graph = {}
    for name, path in MODULES.items():
        targets = {target for _, target, _ in imported(name, path)}
        graph[name] = {t for t in targets if t != name and not (t.startswith(name + ".") or name.startswith(t + "."))}
    return graph


def cycles(graph):
    """Every import circle, each as the list of modules on it (Tarjan's strongly connected components)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_circle_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The frames of fastmi's own code from a public call to the kernel launch (docs/design.md, "Layout"): a
# path that grows is a seam added (12 and 10 before the house was tidied; the aim is 7).
FRAMES = {"layer_mi": 7, "hsic": 7}


@pytest.mark.kernels
@pytest.mark.parametrize("call", sorted(FRAMES))
def test_public_calls_reach_the_kernel_launch_in_few_frames(call, monkeypatch):
    import traceback

    import torch

    import fastmi
    from fastmi.kernels import gram, kde

    if not fastmi.kernels.AVAILABLE:
        pytest.skip("triton is not installed")
    seen = []

    def counting(launch):
        def spy(kernel, grid, *args, **kwargs):
            frames = [f.filename for f in traceback.extract_stack()[:-1]]
            ours = [f for f in frames if f.startswith(str(ROOT)) and not any(p in f for p in ("/tests/", "-packages/"))]
            seen.append(len(ours))
            return launch(kernel, grid, *args, **kwargs)
        return spy

    for module in (kde, gram):
        monkeypatch.setattr(module, "launch", counting(module.launch))
    a, b = torch.randn(40, 3), torch.randn(40, 2)
    getattr(fastmi, call)(a, b, backend="triton")
    assert seen and 5 <= seen[0] <= FRAMES[call]  # 5: the path is seen at all


def test_the_benchmarks_have_one_timer_and_one_input_generator():
    """bench/__init__.py's run_times / timed and layer_pair; a job with its own clock or its own copy of
    the pair is a second way to measure the same thing."""
    for path in (ROOT / "bench").glob("*.py"):
        if path.name != "__init__.py":
            text = path.read_text()
            assert "perf_counter" not in text, path.name
            assert "torch.tanh(a @ torch.randn(d, d" not in text, path.name
    import bench

    calls = []
    times, value = bench.run_times(lambda: calls.append(1) or len(calls), reps=3, warmup=True)
    assert len(times) == 3 and value == 4 and all(t >= 0 for t in times)
    a, b = bench.layer_pair(50, 4, "float64", seed=3)
    again = bench.layer_pair(50, 4, "float64", seed=3)
    assert a.dtype.is_floating_point and a.shape == b.shape == (50, 4)
    assert all(bool((x == y).all()) for x, y in zip((a, b), again))
