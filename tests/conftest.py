import os
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
warnings.filterwarnings("ignore", message=".*kept in float32.*")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny5b():
    from motionlib.models import load_model

    return load_model("tiny-5b", device="cpu")


@pytest.fixture(scope="session")
def tiny2b():
    from motionlib.models import load_model

    return load_model("tiny-2b", device="cpu")


@pytest.fixture(params=["tiny-5b", "tiny-2b"], scope="session")
def tiny(request, tiny5b, tiny2b):
    return tiny5b if request.param == "tiny-5b" else tiny2b
