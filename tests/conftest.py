# Must run before anything imports triton: the Triton kernels run in the interpreter on CPU.
# (On a CUDA machine, TRITON_INTERPRET=0 pytest runs them compiled.)
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
