"""The test media itself: if these fail, the browser tests' video assertions mean nothing."""

from __future__ import annotations

import pytest

from tests.e2e.clips import HEIGHT, WIDTH, Clip
from tests.e2e.conftest import card_number, id_number

pytestmark = pytest.mark.e2e


def test_clips_are_y4m_for_chromium(clips: dict[str, Clip]) -> None:
    for clip in clips.values():
        header = clip.y4m.read_bytes()[:64].split(b"\n", 1)[0]
        assert header.startswith(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{clip.fps}:1".encode()), header
        assert b" C420" in header, header
        assert 3 * clip.fps <= clip.frames <= 5 * clip.fps, (clip.name, clip.frames)


def test_a_face_is_found_in_every_checked_frame_of_both_clips(clips: dict[str, Clip]) -> None:
    for clip in clips.values():
        assert clip.face_fraction >= 0.9, (clip.name, clip.face_fraction)


def test_the_two_people_differ_clearly_in_colour(clips: dict[str, Clip]) -> None:
    customer, advisor = clips["customer"].stats, clips["advisor"].stats
    assert customer.rgb_distance(advisor) > 60
    assert customer.hue_distance(advisor) > 0.5


def test_demo_identity_numbers_carry_valid_check_digits() -> None:
    assert id_number("11010519491231002") == "11010519491231002X"
    assert card_number("7992739871") == "79927398713"
