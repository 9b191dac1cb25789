"""Uploads of the final model and checkpoints to the Hugging Face Hub, in the background, with retries.

A push never blocks or stops training: it runs on `huggingface_hub`'s own background worker
(`HfApi.run_as_future`: one upload at a time, in order). A failed one is logged, with anything shaped
like a token hidden, and queued again at the next `push` / `retry_failed` (each checkpoint) and at
`close` (end of training). Under `HF_HUB_OFFLINE=1` nothing is sent: the folder is logged as not pushed.
The token is whatever `huggingface_hub` finds (`HF_TOKEN` or `hf auth login`); this module never reads it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants

_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


@dataclass
class Upload:
    folder: Path
    path_in_repo: str
    message: str
    allow_patterns: list[str] | None = None


class HubPublisher:
    """Upload local folders to one model repository without waiting for them; retry failures later."""

    def __init__(self, repo_id: str, *, private: bool = True, api: HfApi | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.repo_id, self.private, self.log = repo_id, private, log
        self.api = api if api is not None else HfApi()
        self.pushed: list[Upload] = []
        self._failed: list[Upload] = []
        self._futures: list[Future] = []
        self._lock = threading.Lock()  # the worker thread appends to pushed / _failed
        self._repo_ready = False

    @property
    def failed(self) -> list[Upload]:
        with self._lock:
            return list(self._failed)

    def push(self, folder: str | Path, path_in_repo: str = "", message: str = "Upload model",
             allow_patterns: list[str] | None = None) -> None:
        """Queue an upload of `folder` and return at once; earlier failures are queued again first."""
        self.retry_failed()
        self._submit(Upload(Path(folder), path_in_repo, message, allow_patterns))

    def retry_failed(self) -> None:
        if constants.HF_HUB_OFFLINE:
            return
        with self._lock:
            failed, self._failed = self._failed, []
        for upload in failed:
            if upload.folder.is_dir():
                self._submit(upload)
            else:
                self.log(f"hub: not retrying {upload.folder}: the folder no longer exists")

    def close(self, retries: int = 1) -> bool:
        """Wait for all uploads, retrying failures `retries` more times; True when everything was pushed."""
        for attempt in range(retries + 1):
            wait(self._futures)
            if not self.failed or attempt == retries:
                break
            self.retry_failed()
        for upload in self.failed:
            self.log(f"hub: gave up pushing {upload.folder}; push it later with `nanogpt2 push`")
        return not self.failed

    def _submit(self, upload: Upload) -> None:
        if constants.HF_HUB_OFFLINE:  # every request would fail; keep it as failed for `close` to report
            self.log(f"hub: HF_HUB_OFFLINE is set, so {upload.folder} is not pushed")
            with self._lock:
                self._failed.append(upload)
            return
        self._futures.append(self.api.run_as_future(self._upload, upload))

    def _upload(self, upload: Upload) -> None:
        """Runs on the background worker; records the outcome itself, so a finished future means a recorded one."""
        target = f"{self.repo_id}/{upload.path_in_repo}".rstrip("/")
        try:
            if not self._repo_ready:
                self.api.create_repo(self.repo_id, private=self.private, exist_ok=True, repo_type="model")
                self._repo_ready = True
            self.api.upload_folder(
                repo_id=self.repo_id, folder_path=str(upload.folder), path_in_repo=upload.path_in_repo,
                commit_message=upload.message, allow_patterns=upload.allow_patterns, repo_type="model",
            )
        except Exception as error:  # a push must never stop training: log it, retry it later
            with self._lock:
                self._failed.append(upload)
            self.log(f"hub: push of {upload.folder} to {target} failed "
                     f"({type(error).__name__}: {_TOKEN.sub('hf_***', str(error))}); it will be retried")
            return
        with self._lock:
            self.pushed.append(upload)
        self.log(f"hub: pushed {upload.folder} to {target}")
