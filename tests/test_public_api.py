import starcast


def test_public_surface_is_pinned():
    assert sorted(starcast.__all__) == sorted([
        "MODELS", "ColumnMap", "ConfigError", "DataError", "Forecaster", "ModelFormatError",
        "NotFittedError", "RatingScale", "Split", "StarcastConfig", "StarcastError",
        "SynthConfig", "generate", "load_config", "read_events", "read_items", "split_events",
    ])
    for name in starcast.__all__:
        assert getattr(starcast, name) is not None
