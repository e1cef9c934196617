"""ICE settings and loopback-only mode."""

from __future__ import annotations

import aioice.ice
import pytest

from media.config import MediaConfig
from media.errors import MediaError
from media.ice import (
    browser_ice_servers,
    enable_loopback_ice,
    is_loopback_candidate,
    keep_loopback_candidates,
    loopback_gathering,
    server_rtc_configuration,
)

TURN = MediaConfig(
    ice_servers=(
        "stun:stun.example.org:3478",
        " turn:turn.example.org:3478?transport=udp",
        "turns:turn.example.org:5349?transport=tcp",
    ),
    turn_username="user",
    turn_password="secret",
)


def test_browsers_get_stun_and_turn_with_credentials() -> None:
    assert browser_ice_servers(TURN) == [
        {"urls": ["stun:stun.example.org:3478"]},
        {
            "urls": [
                "turn:turn.example.org:3478?transport=udp",
                "turns:turn.example.org:5349?transport=tcp",
            ],
            "username": "user",
            "credential": "secret",
        },
    ]
    assert browser_ice_servers(MediaConfig()) == []


def test_server_configuration_never_falls_back_to_a_public_stun_server() -> None:
    assert server_rtc_configuration(MediaConfig()).iceServers == []
    assert server_rtc_configuration(MediaConfig(ice_loopback_only=True)).iceServers == []
    turn = server_rtc_configuration(TURN).iceServers
    assert turn is not None and [s.username for s in turn] == [None, "user"]
    assert turn[1].credential == "secret"


def test_config_rejects_unknown_schemes_and_zero_calls() -> None:
    with pytest.raises(ValueError, match="stun:"):
        MediaConfig(ice_servers=("http://example.org",))
    with pytest.raises(ValueError, match="max_calls"):
        MediaConfig(max_calls=0)


@pytest.mark.parametrize(
    ("line", "loopback"),
    [
        ("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", True),
        ("candidate:1 1 udp 2130706431 ::1 5000 typ host", True),
        ("candidate:1 1 udp 2130706431 192.168.1.20 5000 typ host", False),
        ("candidate:1 1 udp 2130706431 3f1c7a9e-1.local 5000 typ host", False),
        ("candidate:1 1 udp 1694498815 203.0.113.9 5000 typ srflx raddr 127.0.0.1", False),
        ("candidate:garbage", False),
    ],
)
def test_is_loopback_candidate(line: str, loopback: bool) -> None:
    assert is_loopback_candidate(line) is loopback


def test_keep_loopback_candidates_drops_only_other_candidates() -> None:
    sdp = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"
        "a=candidate:2 1 udp 1 10.0.0.5 5001 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    assert keep_loopback_candidates(sdp) == (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"
        "a=end-of-candidates\r\n"
    )


def test_loopback_gathering_is_scoped_and_enabling_is_idempotent() -> None:
    enable_loopback_ice()
    wrapper = aioice.ice.get_host_addresses
    enable_loopback_ice()
    assert aioice.ice.get_host_addresses is wrapper
    with loopback_gathering():
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == []
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)


def test_loopback_gathering_needs_enabling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [])
    with pytest.raises(MediaError, match="enable_loopback_ice"), loopback_gathering():
        pass
