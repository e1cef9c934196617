"""Verification settings: the hold-still pause a test (or an operator) may set."""

from __future__ import annotations

from pathlib import Path

import pytest

from verification.challenges import PAUSE
from web.settings import Settings, SettingsError


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CLOUDBRANCH_DATA_DIR": str(tmp_path), "CLOUDBRANCH_SECRET_KEY": "k", **extra}


def test_the_pause_defaults_to_the_anti_replay_range_and_can_be_set(tmp_path: Path) -> None:
    assert Settings.from_env(_env(tmp_path)).verification.pause == PAUSE
    set_ = Settings.from_env(_env(tmp_path, CLOUDBRANCH_VERIFY_PAUSE="0.5, 1.5"))
    assert set_.verification.pause == (0.5, 1.5)
    off = Settings.from_env(_env(tmp_path, CLOUDBRANCH_VERIFY_PAUSE="0"))
    assert off.verification.pause == (0.0, 0.0)


@pytest.mark.parametrize("raw", ["soon", "2,1", "1,2,3", "-1,0", "0,11"])
def test_a_bad_pause_is_named(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match=r"VERIFY_PAUSE|pause"):
        Settings.from_env(_env(tmp_path, CLOUDBRANCH_VERIFY_PAUSE=raw))


@pytest.mark.parametrize(
    ("vocabulary", "named"),
    [
        ("blink,smile", "head movement"),  # met by a recording of somebody talking
        ("turn_left", "two actions"),
        ("blink,wink", "unknown challenge actions"),
    ],
)
def test_a_vocabulary_no_plan_can_come_from_is_refused_at_load(
    tmp_path: Path, vocabulary: str, named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(_env(tmp_path, CLOUDBRANCH_VERIFY_VOCABULARY=vocabulary))


def test_plans_without_a_head_movement_are_a_test_setting_only(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        CLOUDBRANCH_VERIFY_VOCABULARY="blink,smile",
        CLOUDBRANCH_VERIFY_REPLAYABLE_PLANS="1",
    )
    assert Settings.from_env(env).verification.vocabulary == ("blink", "smile")
