"""Fixtures for tests against real llama-server processes and tiny GGUF models made here."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_workers.llamaserver import LlamaServer, binary, start_server
from local_workers.tinygguf import make_tiny_llama

EXE = binary()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/real/" in str(item.fspath):
            item.add_marker(pytest.mark.real)
            if EXE is None:
                item.add_marker(pytest.mark.skip(reason="no llama-server binary: run `bash .ci/build-llama-server` "
                                                        "(or set BEACON_LLAMA_SERVER)"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Two distinct tiny llama models, in a folder of their own (llama-server's --models-dir)."""
    folder = tmp_path_factory.mktemp("models")
    return {name: make_tiny_llama(folder / f"{name}.gguf", seed=seed, name=name)
            for seed, name in enumerate(("tiny-a", "tiny-b"), start=1)}


@pytest.fixture
async def llama_server(tmp_path):
    started: list[LlamaServer] = []

    async def start(**options) -> LlamaServer:
        server = await start_server(EXE, tmp_path, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.cont()
        server.kill()
        await server.process.wait()
