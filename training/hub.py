"""Background pushes of the final model and checkpoints to the Hugging Face Hub, with retries.

A push never blocks or stops training: uploads run in one background thread; a failed one is
logged (without any token) and queued again for the next call to `retry_failed` (at each
checkpoint) and `close` (end of training). The token is whatever `huggingface_hub` finds
(`HF_TOKEN` or `huggingface-cli login`); this module never reads or prints it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def redact(text: str) -> str:
    """Hide anything shaped like a Hugging Face token."""
    return _TOKEN.sub("hf_***", text)


@dataclass(frozen=True)
class Upload:
    folder: Path
    path_in_repo: str
    message: str
    allow_patterns: tuple[str, ...] | None = None


class HubPusher:
    """Queue uploads of local folders to one model repository; retry failures later."""

    def __init__(self, repo_id: str, *, private: bool = True, api: Any = None,
                 log: Callable[[str], None] = print) -> None:
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        self.repo_id = repo_id
        self.private = private
        self.api = api
        self.log = log
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-push")
        self._lock = threading.Lock()
        self._in_flight: dict[Future, Upload] = {}
        self._failed: list[Upload] = []
        self._repo_ready = False
        self.pushed: list[Upload] = []

    def push(self, folder: str | Path, path_in_repo: str = "", message: str = "Upload model",
             allow_patterns: list[str] | None = None) -> None:
        """Start uploading `folder` (returns at once); also re-queues earlier failures."""
        self.retry_failed()
        self._submit(Upload(Path(folder), path_in_repo, message, tuple(allow_patterns) if allow_patterns else None))

    def retry_failed(self) -> None:
        with self._lock:
            failed, self._failed = self._failed, []
        for upload in failed:
            if upload.folder.is_dir():
                self._submit(upload)
            else:
                self.log(f"hub: not retrying {upload.folder}: the folder no longer exists")

    def _submit(self, upload: Upload) -> None:
        future = self._executor.submit(self._upload, upload)
        with self._lock:
            self._in_flight[future] = upload
        future.add_done_callback(self._done)

    def _upload(self, upload: Upload) -> None:
        if not self._repo_ready:
            self.api.create_repo(self.repo_id, private=self.private, exist_ok=True, repo_type="model")
            self._repo_ready = True
        self.api.upload_folder(
            repo_id=self.repo_id,
            folder_path=str(upload.folder),
            path_in_repo=upload.path_in_repo,
            commit_message=upload.message,
            allow_patterns=list(upload.allow_patterns) if upload.allow_patterns else None,
            repo_type="model",
        )

    def _done(self, future: Future) -> None:
        with self._lock:
            upload = self._in_flight.pop(future)
            error = future.exception()
            if error is None:
                self.pushed.append(upload)
            else:
                self._failed.append(upload)
        target = f"{self.repo_id}/{upload.path_in_repo}".rstrip("/")
        if error is None:
            self.log(f"hub: pushed {upload.folder} to {target}")
        else:
            self.log(f"hub: push of {upload.folder} to {target} failed "
                     f"({type(error).__name__}: {redact(str(error))}); it will be retried")

    @property
    def failed(self) -> list[Upload]:
        with self._lock:
            return list(self._failed)

    def close(self, retries: int = 1) -> bool:
        """Wait for all uploads, retrying failures `retries` more times; True when everything was pushed."""
        for attempt in range(retries + 1):
            with self._lock:
                futures = list(self._in_flight)
            wait_futures(futures)
            if not self.failed or attempt == retries:
                break
            self.retry_failed()
        self._executor.shutdown(wait=True)
        for upload in self.failed:
            self.log(f"hub: gave up pushing {upload.folder}; push it later with scripts/push_to_hub.py")
        return not self.failed
