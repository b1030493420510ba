"""Config files (TOML and YAML): every option settable, checked, and layered under the flags."""

from __future__ import annotations

import pytest

from s3fn.config import (
    CONFIG_FILE,
    ConfigError,
    TrainConfig,
    load_config_file,
    option_fields,
    resolve,
)


def test_toml_and_yaml_give_the_same_options(tmp_path):
    (tmp_path / "a.toml").write_text(
        'data = "cubes/"\nstage = "joint"\nchannels = [8, 16, 32]\nlr = 0.01\nflip = true\n'
    )
    (tmp_path / "a.yaml").write_text(
        "data: cubes/\nstage: joint\nchannels: [8, 16, 32]\nlr: 0.01\nflip: true\n"
    )
    assert load_config_file(tmp_path / "a.toml") == load_config_file(tmp_path / "a.yaml")


def test_layers_defaults_then_file_then_flags():
    config = resolve({"epochs": 5, "seed": 2}, {"seed": 7})
    assert (config.epochs, config.seed, config.batch_size) == (5, 7, None)


def test_the_preset_fills_what_the_config_leaves_open_and_the_config_wins():
    from s3fn.train.presets import PAPER_CONV_L2, PRESETS
    from s3fn.train.settings import resolve as apply_preset

    def fit_options(config: TrainConfig) -> tuple:
        recipe = apply_preset(config.settings())
        return recipe.cnn, recipe.semantic

    paper, paper_head = fit_options(TrainConfig(preset="paper"))
    assert (paper.batch_size, paper.epochs, paper.layer_weight_decay) == (4, 100, PAPER_CONV_L2)
    assert paper.augment.scale == (0.9, 1.1) and not paper.augment.flip
    assert (paper_head.epochs, paper_head.batch_size) == (50, 4)
    given = TrainConfig(batch_size=16, epochs=3, augment_scale=[], flip=False, label_smoothing=0)
    first, second = fit_options(given)
    assert (first.batch_size, second.batch_size, first.epochs) == (16, 16, 3)
    assert second.epochs == PRESETS["default"].semantic.epochs
    assert first.augment.scale is None and not first.augment.flip
    assert first.augment.rot90 == PRESETS["default"].cnn.augment.rot90
    assert first.label_smoothing == 0


def test_saved_config_keeps_the_reasons_as_comments(tmp_path):
    config = TrainConfig(data="x", window=9)
    path = config.save(tmp_path, {"window": "9 (the smallest object holds 11x11)"})
    assert "#   window: 9 (the smallest object holds 11x11)" in path.read_text()
    assert resolve(load_config_file(path)) == config


def test_saved_config_reads_back_identically(tmp_path):
    config = TrainConfig(data="x", classes=["a", "b"], augment_scale=None, window=9)
    path = config.save(tmp_path)
    assert path.name == CONFIG_FILE
    assert resolve(load_config_file(path)) == config


def test_every_option_has_help_and_a_type():
    for spec in option_fields():
        assert spec.metadata["help"] and spec.metadata["kind"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch = 3\n", "unknown option 'epoch'"),
        ('epochs = "3"\n', "epochs = '3'; expected an integer"),
        ("lr = true\n", "lr = True; expected a number"),
        ('stage = "both"\n', "stage = 'both'; expected one of two-stage, joint"),
        ("epochs = [\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.toml") as error:
        load_config_file(path)
    assert message in str(error.value)


def test_unknown_formats_and_missing_files(tmp_path):
    (tmp_path / "c.ini").write_text("")
    with pytest.raises(ConfigError, match=r"expected \.toml or \.yaml"):
        load_config_file(tmp_path / "c.ini")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config_file(tmp_path / "none.toml")
