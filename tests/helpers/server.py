"""Real ``tdmi serve`` processes on free loopback ports, for end-to-end tests.

``ServerFactory`` shares them: one process per set of arguments and environment for the whole
test session (``server_factory``, tests/helpers/shared_fixtures.py). A test that stops, kills or
restarts its server starts its own ``ServerProcess`` (or ``running_server``) instead."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["SMALL_LIMITS", "ServerFactory", "ServerProcess", "free_port", "running_server"]

# small limits so that the limit tests stay small
SMALL_LIMITS = {
    "TDMI_MAX_UPLOAD_BYTES": str(2_000_000),
    "TDMI_MAX_VIDEO_PIXELS": str(640 * 480),
    "TDMI_WAIT_MAX_FRAMES": "40",
    "TDMI_DETECT_EVERY": "4",
    "TDMI_MAX_STREAMS": "4",
    "TDMI_STALENESS_MS": "60000",  # a 2-core CI machine is slow: no live drops in these tests
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """Starts ``python -m tdmi.service.cli serve`` (or ``worker``) with settings in the environment;
    ``wait_ready`` waits for /readyz. With ``pass_port=False`` the node picks its own port (its
    role's default) and ``port`` says where the test expects it."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        command: str = "serve",
        pass_port: bool = True,
    ):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / f"{command}-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "tdmi.service.cli",
            command,
            *(["--port", str(self.port)] if pass_port else []),
            "--data-dir",
            str(data_dir),
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*command, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TDMI_DEVICE": "cpu", **(env or {})},
        )

    def wait_ready(self, timeout: float = 600, expect_ready: bool = True) -> httpx.Response:
        """Wait for /readyz (the server's warm-up runs every batch size once: minutes on a busy CPU)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                reply = httpx.get(f"{self.base}/readyz", timeout=2)
                if reply.status_code == 200 or (
                    not expect_ready and reply.json().get("reason") != "loading models"
                ):
                    return reply
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextmanager
def running_server(
    data_dir: Path, checkpoint: Path, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A ready ``tdmi serve`` of ``tdmi-tiny`` with ``checkpoint`` (a test's own, quick to load)
    for the block (a module's own server, when its tests starve, flood or measure it), stopped
    after it, also when it never got ready."""
    proc = ServerProcess(data_dir, "--model", f"tdmi-tiny={checkpoint}", env=env)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


class ServerFactory:
    """Ready servers shared by a test session: ``get`` starts one per set of arguments and
    environment the first time it is asked for; ``stop_all`` ends them with the session. Tests
    that share a server must leave it running (and may find the jobs and streams of others)."""

    def __init__(self, root: Path):
        self.root = root
        self._servers: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], ServerProcess] = {}

    def get(self, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        key = (args, tuple(sorted((env or {}).items())))
        if key not in self._servers:
            proc = self._servers[key] = ServerProcess(
                self.root / f"server-{len(self._servers)}", *args, env=env
            )
            try:
                proc.wait_ready()
            except BaseException:
                proc.stop()  # later asks fail at once (below) instead of waiting for it again
                raise
        server = self._servers[key]
        if server.proc.poll() is not None:
            raise RuntimeError(f"the shared server exited with {server.proc.returncode}:\n{server.log()}")
        return server

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()
