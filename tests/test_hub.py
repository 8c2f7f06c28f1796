"""samuel.hub: the hub is not asked when offline mode is set or no connection can be made."""
from __future__ import annotations

import socket

import pytest

from samuel import aesthetics, hub


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for name in ("HF_HUB_OFFLINE", "SAMUEL_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_offline_mode_is_read_from_either_variable(monkeypatch, no_network):
    assert not hub.offline_asked()
    for name in ("HF_HUB_OFFLINE", "SAMUEL_OFFLINE"):
        monkeypatch.setenv(name, "1")
        assert hub.offline_asked() and not hub.reachable()
        monkeypatch.setenv(name, "0")
        assert not hub.offline_asked()
    assert no_network == []  # offline mode asked for: no connection was even tried


def test_no_connection_means_unreachable(no_network):
    assert hub.reachable(timeout=0.5) is False
    assert no_network and no_network[0][0] == hub.HUB


def test_audiobox_without_a_network_is_one_sentence_from_the_cache_alone(tmp_path, monkeypatch, no_network):
    """Without HF_HUB_OFFLINE and without a network, the hub client is asked for the local cache
    only (it would otherwise retry each file for about half a minute)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv(aesthetics.ENV_VAR, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    seen = {}
    import huggingface_hub

    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        seen.setdefault("local_files_only", kwargs.get("local_files_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    with pytest.raises(aesthetics.AestheticsUnavailable, match="not cached here"):
        aesthetics.load(None)
    assert seen["local_files_only"] is True
