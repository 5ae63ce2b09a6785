import json

import numpy as np
import pytest

from starcast import load_config
from starcast.config import cost_rows
from starcast.errors import ConfigError


def test_a_config_file_is_read_with_its_costs(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('model = "bias"\n[stars]\ncosts = [1, 4, 4, 2, 1]\n')
    config = load_config(path)
    assert config.model == "bias" and config.stars.costs == (1, 4, 4, 2, 1)


@pytest.mark.parametrize("costs, message", [
    ([1, 2, -3], "finite and non-negative"),
    ([[1, 2], [3]], "must be square"),
    ([1, [2, 3]], "per-star weights or a square matrix"),
    (["a", "b"], "per-star weights or a square matrix"),
    ([], "per-star weights or a square matrix"),
])
def test_malformed_costs_in_a_file_are_refused_naming_the_file(tmp_path, costs, message) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"stars": {"costs": costs}}))
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(path)
    assert str(refused.value).startswith(f"{path}.stars: stars.costs: ")


def test_cost_rows_keeps_a_matrix_and_makes_weights_one_row() -> None:
    assert cost_rows([[0, 1], [1, 0]], "c") == [[0.0, 1.0], [1.0, 0.0]]
    assert cost_rows((1, 2.5), "c") == [[1.0, 2.5]]
    with pytest.raises(ConfigError, match="^c: "):
        cost_rows([True, 1], "c")


def test_cost_rows_take_numpy_numbers_and_refuse_booleans() -> None:
    assert cost_rows([np.float32(1.5), np.int64(2)], "c") == [[1.5, 2.0]]
    with pytest.raises(ConfigError, match="per-star weights"):
        cost_rows([np.bool_(True), 1], "c")
