import starcast


def test_public_surface_is_pinned():
    assert sorted(starcast.__all__) == sorted([
        "MODELS", "ColumnMap", "ConfigError", "DataError", "Forecaster", "ModelFormatError",
        "NotFittedError", "RatingScale", "Split", "StarcastConfig", "StarcastError",
        "SynthConfig", "generate", "load_config", "read_events", "read_items", "split_events",
    ])
    for name in starcast.__all__:
        assert getattr(starcast, name) is not None


def test_the_data_side_does_not_load_torch() -> None:
    """`starcast data convert` of a multi-GB dump should not carry torch's 0.26 GB."""
    import subprocess
    import sys

    code = ("import sys, starcast, starcast.cli, starcast.data.convert; "
            "print('torch' in sys.modules); starcast.Forecaster; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
