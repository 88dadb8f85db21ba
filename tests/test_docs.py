"""The documentation: every public name has a docstring and an entry in the API reference (docs/api.md; the
Sphinx -W build does not check that), and every Python block of README.md and docs/*.md runs.

Blocks of a page run in order in one namespace, seeded with small stand-ins for the names the pages'
fragments use (h1, model, loader, ...), in a temporary directory (some write plots). A block whose first
line is `# doc-test: skip (reason)` is not run; `# doc-test: cuda` blocks run only with a GPU."""
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import fastmi
from fastmi.estimators import ESTIMATORS
from fastmi.measures import MEASURES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
API = (ROOT / "docs" / "api.md").read_text()


def api_entries():
    """The names listed in docs/api.md's autosummary tables, qualified by their currentmodule."""
    entries, module = set(), ""
    for line in API.splitlines():
        current = re.match(r"\.\. currentmodule:: (\S+)", line)
        if current:
            module = current.group(1)
        elif re.match(r"   [A-Za-z_][\w.]*$", line):
            entries.add(f"{module}.{line.strip()}")
    return entries


def test_every_public_name_has_a_docstring_and_an_api_entry():
    from fastmi import metrics
    entries = api_entries()
    public = {f"fastmi.{name}": getattr(fastmi, name) for name in fastmi.__all__}
    public |= {f"{cls.__module__}.{cls.__qualname__}": cls for cls in ESTIMATORS.values()}
    public |= {f"fastmi.{fn.__name__}": fn for fn in MEASURES.values()}
    public |= {f"fastmi.metrics.{name}": getattr(metrics, name) for name in
               ("MutualInformation", "DistanceCorrelation", "HSIC", "CKA")}
    registries = {"fastmi.ESTIMATORS": "fastmi.estimators.ESTIMATORS", "fastmi.MEASURES": "fastmi.measures.MEASURES"}
    missing = [name for name in public if registries.get(name, name) not in entries]
    assert not missing, f"not in docs/api.md: {missing}"
    undocumented = [name for name, obj in public.items() if name not in registries and not (obj.__doc__ or "").strip()]
    assert not undocumented, f"no docstring: {undocumented}"
    for name, where in registries.items():  # a dict has no docstring of its own: autodoc reads its #: comment
        module, attribute = where.rsplit(".", 1)
        source = (ROOT / module.replace(".", "/") / "__init__.py").read_text()
        assert re.search(rf"^#: .+\n{attribute} = ", source, re.M), f"{where} has no #: doc comment"


def blocks(page):
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def stand_ins():
    """Small values for the names the docs' fragments take as given."""
    g = torch.Generator().manual_seed(0)
    h1 = torch.randn(200, 6, generator=g)
    h2 = torch.tanh(h1 @ torch.randn(6, 5, generator=g)) + 0.3 * torch.randn(200, 5, generator=g)
    h3, h4 = torch.relu(h2 @ torch.randn(5, 4, generator=g)), torch.randn(200, 3, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    y = torch.randint(0, 3, (200,), generator=g)
    return dict(torch=torch, fastmi=fastmi, h=h1, h1=h1, h2=h2, h3=h3, h4=h4, a=h1.clone().requires_grad_(), b=h2,
                x=h1, probe=h1, y=y, labels=y, q1=(h1 * 100).round() / 100, q2=(h2 * 100).round() / 100, model=model,
                loader=[(h1[:100], y[:100]), (h1[100:], y[100:])], loss_fn=torch.nn.functional.cross_entropy,
                opt=torch.optim.SGD(model.parameters(), lr=0.01), beta=0.1, log=lambda values: None,
                reg=fastmi.Regularizer(model, weight=0.01))


def test_every_page_has_python_blocks_to_run():
    assert sum(len(blocks(page)) for page in PAGES) >= 15


def run_page(page):
    """Run a page's blocks in order in one namespace; None, or the first failure as text."""
    namespace = stand_ins()
    for number, code in enumerate(blocks(page)):
        first = code.splitlines()[0]
        needs_cuda = first.startswith("# doc-test: cuda") and not torch.cuda.is_available()
        if first.startswith("# doc-test: skip") or needs_cuda:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the stand-ins are small: estimators' small-sample warnings
                exec(compile(code, f"{page.name}, python block {number}", "exec"), namespace)
        except Exception as error:  # reported by the test, with the block's number
            return f"python block {number}: {type(error).__name__}: {error}"
    return None


@pytest.fixture(scope="module")
def page_failures(tmp_path_factory):
    """Every page run as a user on a CPU runs it: in a fresh process without TRITON_INTERPRET (which the test
    session sets, and under which float32 CPU work would run the kernels in the interpreter), in a
    temporary directory (pages write plots)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, __file__, *map(str, PAGES)], cwd=tmp_path_factory.mktemp("docs"), env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_the_pages_python_blocks_run(page, page_failures):
    assert page_failures[str(page)] is None, page_failures[str(page)]


if __name__ == "__main__":  # the fixture's process: one JSON line {page: None or its first failure}
    print(json.dumps({page: run_page(Path(page)) for page in sys.argv[1:]}))
