"""The prediction API as `clinrisk serve` runs it (uvicorn, the local API Gateway, the predict
Lambda in its execution environments), in a child process on an ephemeral port, with its log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from clinrisk.serving.auth import issue_token
from tests.conftest import local_settings

_LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
_SERVE = "from clinrisk.local.api_server import serve; serve(host='127.0.0.1', port=0)"


@dataclass
class LiveApi:
    url: str
    home: Path
    log: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # the handlers' own log (stdout), when asked for

    def token(self, *scopes: str, ttl_seconds: int = 3600) -> str:
        return issue_token(scopes, subject="api-test", ttl_seconds=ttl_seconds, settings=local_settings(self.home))

    def log_since(self, mark: int, *, settle_seconds: float = 0.3) -> list[str]:
        """The log lines written after `len(log)` was `mark` (the server writes them as it answers)."""
        time.sleep(settle_seconds)
        return self.log[mark:]


@contextmanager
def clinrisk_serve(
    home: Path, environment: dict[str, str] | None = None, *, handler_output: bool = False
) -> Iterator[LiveApi]:
    """The server, its log (stderr: uvicorn and the local gateway), and with `handler_output` the
    handlers' own log lines (stdout: Powertools' JSON, as CloudWatch would get them)."""
    env = {
        **os.environ,
        "CLINRISK_HOME": str(home),
        "POWERTOOLS_METRICS_NAMESPACE": "clinrisk-test",
        **(environment or {}),
    }
    stdout = subprocess.PIPE if handler_output else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE], env=env, stderr=subprocess.PIPE, stdout=stdout, text=True
    )
    assert process.stderr is not None
    log: list[str] = []
    output: list[str] = []
    if (handler_log := process.stdout) is not None:
        threading.Thread(target=lambda: output.extend(line.rstrip("\n") for line in handler_log), daemon=True).start()
    listening = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line.rstrip("\n"))
            if _LISTENING.search(line):
                listening.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert listening.wait(180), "clinrisk serve did not start:\n" + "\n".join(log[-30:])
        url = next(m.group(1) for line in log if (m := _LISTENING.search(line)))
        yield LiveApi(url=url, home=home, log=log, output=output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
