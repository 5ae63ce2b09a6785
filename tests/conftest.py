import os
from pathlib import Path

import pytest
from hypothesis import settings

from starcast.config import FMConfig, LSTMConfig, StarcastConfig, TransformerConfig

# the same examples on every run: a red CI run reproduces, a green one stays green
settings.register_profile("starcast", derandomize=True, deadline=None)
settings.load_profile("starcast")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real review data (STARCAST_DATA_DIR overrides ../shared/data)."""
    path = Path(os.environ.get("STARCAST_DATA_DIR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def quick() -> StarcastConfig:
    """The defaults with short FM chains, for tests of what a fitted model does rather than
    how well: the default schedule costs seconds per fit even on small data."""
    fm = FMConfig(chains=2, iterations=20, burn_in=5, probit_iterations=20, probit_burn_in=5)
    return StarcastConfig(lstm=LSTMConfig(fm=fm), transformer=TransformerConfig(fm=fm))
