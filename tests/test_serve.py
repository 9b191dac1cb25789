"""`transformers serve` (the OpenAI-compatible server) answers for the plain GPT-2 export of a nanogpt2 chat model.

The server cannot load remote-code models, so what it serves is `nanogpt2 convert --to-hf` of the chat model.
A real server process on 127.0.0.1 (a free port), killed at the end; skipped without the serving extra.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_chat import MAX_NEW_TOKENS, MESSAGE, greedy_session, save, tiny_chat_model
from transformers.utils import is_serve_available

from nanogpt2.cli import main

pytestmark = pytest.mark.skipif(not is_serve_available(),
                                reason='needs the serving extra: pip install "transformers[serving]==5.24.0"')

STARTUP_TIMEOUT_S = 180
# Only 127.0.0.1 is ever contacted: never through a proxy from the environment.
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def chat_and_export(tiny_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny nanogpt2 chat model and its plain GPT-2 export, as a user makes it."""
    root = tmp_path_factory.mktemp("serve")
    chat_dir = save(*tiny_chat_model(tiny_tokenizer_dir), root / "chat")
    assert main(["convert", "--to-hf", str(chat_dir), "--out", str(root / "export")]) == 0
    return chat_dir, root / "export"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    """(HTTP status, response text) of a GET, or of a POST of `body` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with LOCAL.open(req, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def server(chat_and_export: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of `transformers serve EXPORT` once /health answers; the process is always ended."""
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1",
           "--port", url.rsplit(":", 1)[1], str(chat_and_export[1])]
    with log.open("w") as log_file:
        process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert process.poll() is None, f"transformers serve exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no /health in {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}"
            try:
                if request(f"{url}/health")[0] == 200:
                    break
            except OSError:  # not listening yet
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def completion_request(export_dir: Path, **extra: Any) -> dict[str, Any]:
    # max_tokens is needed: the server's default (1024 new tokens) would run past this model's 64 positions.
    return {"model": str(export_dir), "messages": [{"role": "user", "content": MESSAGE}],
            "max_tokens": MAX_NEW_TOKENS, "temperature": 0, **extra}


def test_chat_completion_is_the_chat_models_reply(server: str, chat_and_export: tuple[Path, Path]) -> None:
    chat_dir, export_dir = chat_and_export
    status, text = request(f"{server}/v1/chat/completions", completion_request(export_dir))
    assert status == 200, text
    (choice,) = json.loads(text)["choices"]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    # The export kept the chat tokens' rows and the chat template: the same greedy reply as the nanogpt2 model.
    assert choice["message"]["content"].strip() == greedy_session(chat_dir).send(MESSAGE).text != ""


def test_streamed_chat_completion_has_the_same_reply(server: str, chat_and_export: tuple[Path, Path]) -> None:
    _, export_dir = chat_and_export
    status, text = request(f"{server}/v1/chat/completions", completion_request(export_dir, stream=True))
    assert status == 200, text
    events = [json.loads(line.removeprefix("data: ")) for line in text.splitlines()
              if line.startswith("data: {")]  # server-sent events; a final `data: [DONE]` is not JSON
    streamed = "".join(event["choices"][0]["delta"].get("content", "") for event in events)
    _, whole = request(f"{server}/v1/chat/completions", completion_request(export_dir))
    assert streamed == json.loads(whole)["choices"][0]["message"]["content"] != ""
