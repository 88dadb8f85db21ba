# Must run before anything imports triton: by default the Triton kernels run in the interpreter (on CPU
# tensors). The tests marked `gpu` need compiled kernels on a CUDA GPU: TRITON_INTERPRET=0 pytest -m gpu
# tests (bench/gpu_check.sh); elsewhere they are skipped, with that reason.
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
# What triton < 3.10 does by default, stated so that 3.9 does not warn that its default will change.
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import pytest  # noqa: E402
import torch  # noqa: E402  (importing torch does not import triton)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() and os.environ["TRITON_INTERPRET"] == "0":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and compiled kernels: TRITON_INTERPRET=0 pytest -m gpu tests")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
