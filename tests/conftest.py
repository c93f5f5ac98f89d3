import numpy as np
import pytest

from mtc_core.training.trainer import TrainConfig

TINY_MLP = {"latent_dim": 4, "hidden": 32}


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """A test's training with num_threads set (torch.set_num_threads, in the thread that trains) does not leak into the
    next test's threads."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_tiny_config(**overrides) -> TrainConfig:
    """A few-second training on the toy with a small MLP."""
    params = {"model": "beta_vae", "model_params": dict(TINY_MLP), "dataset": {"name": "toy"}, "steps": 20,
              "batch_size": 16, "lr": 1e-3, "eval_every": 10, "eval_size": 32, "checkpoint_every": 10, "device": "cpu"}
    params.update(overrides)
    return TrainConfig(**params)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One trained tiny run directory shared by read-only tests."""
    from mtc_core.training.trainer import train

    path = tmp_path_factory.mktemp("runs") / "tiny"
    train(make_tiny_config(steps=30), path, command="pytest fixture")
    return path


@pytest.fixture
def tiny_config():
    return make_tiny_config
