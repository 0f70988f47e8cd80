"""``RayClient``: start a local Ray head node for a pipeline run and stop exactly that head afterwards.

Curator scripts do ``client = RayClient(num_cpus=..., num_gpus=...); client.start(); ...; client.stop()``.
The head runs as ``ray start --head --block`` in a process group of its own: every Ray daemon and worker of
this head descends from that command and stays in its group, so ``stop()`` ends that group and nothing else.
A plain ``ray stop`` would end every Ray process of the user on the machine, other clusters included.

While the head runs, ``RAY_ADDRESS`` points at it, so executors (``RayActorPoolExecutor``,
``RayDataExecutor``, ``XennaExecutor``) connect to it instead of starting a cluster of their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil
from loguru import logger

DEFAULT_RAY_PORT = 6379
DEFAULT_RAY_DASHBOARD_PORT = 8265
DEFAULT_RAY_CLIENT_SERVER_PORT = 10001
DEFAULT_RAY_TEMP_DIR = "/tmp/ray"
DEFAULT_RAY_METRICS_PORT = 8080
DEFAULT_RAY_DASHBOARD_HOST = "127.0.0.1"
# How long `start()` waits for the head to report that it is up.
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0
_STARTED_LINE = "Ray runtime started"
# The environment variables `start()` sets for this process; `stop()` puts back what was there before.
_MANAGED_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE")


def _check_port(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"RayClient: {name!r} must be a port number from 1 to 65535, got {value!r}")
    return value


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
        return True


def _next_free_port(first: int, taken: set[int]) -> int:
    """The first port from ``first`` on that nothing listens on and this head does not use yet."""
    for port in range(first, 65536):
        if port not in taken and _port_is_free(port):
            return port
    raise RuntimeError(f"RayClient: no free port at or above {first}")


def _ray_executable() -> str:
    """The ``ray`` command of this Python environment (not whichever one comes first on PATH)."""
    candidate = Path(sys.executable).parent / "ray"
    if candidate.exists():
        return str(candidate)
    raise RuntimeError(
        f"RayClient: the `ray` command was not found next to {sys.executable}; install ray[default] in this "
        "environment"
    )


@dataclass
class RayClient:
    """Starts a single-node Ray cluster (the head) on this machine; ``stop()`` ends it again.

    Ports that are already in use are replaced by the next free port above them (the ports actually used
    are in the attributes after ``start()``). ``num_cpus``/``num_gpus``/``object_store_memory`` of None let
    Ray detect the machine's resources. Usable as a context manager: ``with RayClient(num_cpus=4): ...``.
    """

    ray_port: int = DEFAULT_RAY_PORT
    ray_dashboard_port: int = DEFAULT_RAY_DASHBOARD_PORT
    ray_client_server_port: int = DEFAULT_RAY_CLIENT_SERVER_PORT
    ray_temp_dir: str = DEFAULT_RAY_TEMP_DIR
    include_dashboard: bool = True
    ray_metrics_port: int = DEFAULT_RAY_METRICS_PORT
    ray_dashboard_host: str = DEFAULT_RAY_DASHBOARD_HOST
    num_gpus: int | None = None
    num_cpus: int | None = None
    object_store_memory: int | None = None
    enable_object_spilling: bool = False
    ray_stdouterr_capture_file: str | None = None
    metrics_dir: str | None = None

    ray_process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _saved_env: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    _output_path: str | None = field(default=None, init=False, repr=False)
    _output_is_temporary: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        for name in ("ray_port", "ray_dashboard_port", "ray_client_server_port", "ray_metrics_port"):
            _check_port(name, getattr(self, name))
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"RayClient: {name!r} must be None or an int >= 0, got {value!r}")
        store = self.object_store_memory
        # Ray's own minimum for the object store is 75 MB.
        if store is not None and (
            isinstance(store, bool) or not isinstance(store, int) or store < 75 * 2**20
        ):
            raise ValueError(
                f"RayClient: 'object_store_memory' must be None or an int of bytes >= 78643200 (75 MiB), "
                f"got {store!r}"
            )
        for name in ("include_dashboard", "enable_object_spilling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RayClient: {name!r} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.ray_temp_dir, str) or not self.ray_temp_dir:
            raise ValueError(f"RayClient: 'ray_temp_dir' must be a non-empty path, got {self.ray_temp_dir!r}")
        if not isinstance(self.ray_dashboard_host, str) or not self.ray_dashboard_host:
            raise ValueError(
                f"RayClient: 'ray_dashboard_host' must be a host name or address, got {self.ray_dashboard_host!r}"
            )

    @property
    def address(self) -> str:
        """The GCS address of the head (what ``RAY_ADDRESS`` holds while it runs)."""
        return f"127.0.0.1:{self.ray_port}"

    @property
    def is_running(self) -> bool:
        return self.ray_process is not None and self.ray_process.poll() is None

    def start(self) -> None:
        """Start the head node and point ``RAY_ADDRESS`` at it; returns once the cluster accepts clients."""
        if self.ray_process is not None:
            raise RuntimeError(f"RayClient: already started (head at {self.address}); call stop() first")
        self._validate()
        if os.environ.get("RAY_ADDRESS"):
            # Curator warns and starts its own cluster anyway: the executors then use the new one.
            logger.warning(
                f"RAY_ADDRESS was set to {os.environ['RAY_ADDRESS']!r}; RayClient starts its own head and "
                "points RAY_ADDRESS at it until stop()"
            )
        self._pick_ports()
        temp_dir = Path(self.ray_temp_dir).expanduser().resolve()
        if temp_dir.exists() and not temp_dir.is_dir():
            raise ValueError(f"RayClient: 'ray_temp_dir' {str(temp_dir)!r} exists and is not a directory")
        temp_dir.mkdir(parents=True, exist_ok=True)
        self.ray_temp_dir = str(temp_dir)

        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # Ray 2.60 turns token authentication on for `ray start` clusters unless told otherwise; a caller who
        # set RAY_AUTH_MODE (e.g. "token") keeps their choice.
        env.setdefault("RAY_AUTH_MODE", "disabled")
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")

        if self.ray_stdouterr_capture_file is not None:
            self._output_path, self._output_is_temporary = self.ray_stdouterr_capture_file, False
        else:
            fd, self._output_path = tempfile.mkstemp(prefix="ray-head-", suffix=".log")
            os.close(fd)
            self._output_is_temporary = True
        with open(self._output_path, "wb") as out:
            # A session of its own: the head and everything it starts form one process group.
            self.ray_process = subprocess.Popen(
                self._command(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self._wait_until_started()
        except BaseException:
            self._terminate()
            raise
        self._saved_env = {name: os.environ.get(name) for name in _MANAGED_ENV}
        os.environ["RAY_ADDRESS"] = self.address
        os.environ["RAY_AUTH_MODE"] = env["RAY_AUTH_MODE"]
        logger.info(f"Ray head started at {self.address} (pid {self.ray_process.pid}, temp dir {temp_dir})")

    def stop(self) -> None:
        """End the head this client started (its whole process group) and restore ``RAY_ADDRESS``."""
        if self.ray_process is None:
            return
        import ray

        if ray.is_initialized():
            # A driver still connected to this head would lose it under its feet: disconnect it first.
            try:
                connected = ray.get_runtime_context().gcs_address
            except Exception:  # a half-initialised session counts as not ours
                connected = None
            if connected is not None and connected.rsplit(":", 1)[-1] == str(self.ray_port):
                ray.shutdown()
        self._terminate()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def __enter__(self) -> RayClient:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------------------------------------

    def _pick_ports(self) -> None:
        taken: set[int] = set()
        for name in ("ray_port", "ray_client_server_port", "ray_dashboard_port", "ray_metrics_port"):
            port = _next_free_port(getattr(self, name), taken)
            if port != getattr(self, name):
                logger.info(f"RayClient: port {getattr(self, name)} is in use; {name} = {port}")
            setattr(self, name, port)
            taken.add(port)

    def _command(self) -> list[str]:
        command = [
            _ray_executable(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={self.ray_port}",
            f"--ray-client-server-port={self.ray_client_server_port}",
            f"--temp-dir={self.ray_temp_dir}",
            f"--metrics-export-port={self.ray_metrics_port}",
            "--disable-usage-stats",
        ]
        if self.include_dashboard:
            command += [
                "--include-dashboard=true",
                f"--dashboard-host={self.ray_dashboard_host}",
                f"--dashboard-port={self.ray_dashboard_port}",
            ]
        else:
            command.append("--include-dashboard=false")
        if self.num_cpus is not None:
            command.append(f"--num-cpus={self.num_cpus}")
        if self.num_gpus is not None:
            command.append(f"--num-gpus={self.num_gpus}")
        if self.object_store_memory is not None:
            command.append(f"--object-store-memory={self.object_store_memory}")
        if not self.enable_object_spilling:
            command.append("--system-config=" + json.dumps({"automatic_object_spilling_enabled": False}))
        return command

    def _output(self) -> str:
        if self._output_path is None:
            return ""
        try:
            return Path(self._output_path).read_text(errors="replace")
        except OSError:
            return ""

    def _wait_until_started(self) -> None:
        assert self.ray_process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.ray_process.poll() is not None:
                raise RuntimeError(
                    f"RayClient: `ray start --head` exited with code {self.ray_process.returncode}:\n"
                    f"{self._output()[-4000:]}"
                )
            if _STARTED_LINE in self._output():
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"RayClient: the head did not start within {START_TIMEOUT_S:.0f} s:\n{self._output()[-4000:]}"
        )

    def _terminate(self) -> None:
        """SIGTERM to the head's process group (and any descendant that left it), SIGKILL what outlives it."""
        proc, self.ray_process = self.ray_process, None
        if proc is None:
            return
        members: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(proc.pid)
            for p in [root, *root.children(recursive=True)]:
                members[p.pid] = p
        except psutil.NoSuchProcess:
            pass
        pgid = proc.pid  # start_new_session: the head command leads its own group
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == pgid:
                    members.setdefault(p.pid, p)
            except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                continue
        members.pop(os.getpid(), None)
        for p in members.values():
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(list(members.values()), timeout=STOP_GRACE_S)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self._output_is_temporary and self._output_path is not None:
            Path(self._output_path).unlink(missing_ok=True)
        self._output_path = None
