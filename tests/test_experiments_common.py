"""Profile rows hold only what differs from TrainConfig's defaults, checked when a module loads."""

import pytest

from hipcore.experiments import common, flattening, mae_positions, scaling
from hipcore.experiments import imagenet_comparison as ic
from hipcore.notebook import PROFILES
from hipcore.train import TrainConfig
from hipcore.train.config import PLATEAU_DEFAULTS, PLATEAU_FIELDS


def test_a_row_that_repeats_a_default_fails_naming_the_row():
    with pytest.raises(ValueError, match=r"profile 'quick' repeats the default of \['lr', 'precision'\]"):
        common.check_profiles({"smoke": {"epochs": 1}, "quick": {"lr": 1e-3, "precision": "auto"}})
    with pytest.raises(ValueError, match=r"profile 'smoke' repeats the default of \['pretrain_lr'\]"):
        common.check_profiles({"smoke": {"lr": 2e-3, "pretrain_lr": 2e-3}})       # its default: the row's lr
    with pytest.raises(ValueError, match=r"profile 'smoke' repeats the default of \['seeds'\]"):
        common.check_profiles({"smoke": {"seeds": (0,)}})


def test_a_typo_or_a_value_trainconfig_refuses_fails_naming_the_row():
    with pytest.raises(ValueError, match=r"profile 'full' sets \['epoch'\]"):
        common.check_profiles({"full": {"epoch": 3}})
    with pytest.raises(ValueError, match="profile 'full': epochs must be a positive int, got 0"):
        common.check_profiles({"full": {"epochs": 0}})
    with pytest.raises(ValueError, match="profile 'paper' sets \\['seed'\\]"):      # per run, never a profile's
        common.check_profiles({"paper": {"seed": 3}})
    common.check_profiles({"full": {"epochs": 3, "arms": ("a",)}}, {"arms": "which arms run"})


def test_profiles_fill_the_defaults_from_trainconfig_alone():
    table = common.profiles({"smoke": {"epochs": 1}})
    assert table["smoke"]["epochs"] == 1 and table["smoke"]["lr"] == TrainConfig.lr
    assert table["smoke"]["seeds"] == (0,) and "quiet" not in table["smoke"] and "pretrain_lr" not in table["smoke"]
    assert common.IMAGE_TABLE["quick"]["precision"] == TrainConfig.precision


def test_the_plateau_defaults_are_trainconfigs():
    assert PLATEAU_DEFAULTS == {k: getattr(TrainConfig(), k) for k in PLATEAU_FIELDS}


@pytest.mark.parametrize("module", [ic, flattening, mae_positions], ids=lambda m: m.NOTEBOOK)
def test_the_image_notebooks_extend_the_shared_image_settings(module):
    """Their shared arms (HiP with MAE, raster order, ...) are then one cached run, not three."""
    assert set(module.TABLE) == {*PROFILES, "converged"}     # converged: the queue's (hipcore.converge)
    for profile, row in module.TABLE.items():
        assert {k: row[k] for k in common.IMAGE_TABLE[profile]} == common.IMAGE_TABLE[profile], profile
    assert scaling.TABLE["quick"]["epochs"] == common.IMAGE_TABLE["quick"]["epochs"]
