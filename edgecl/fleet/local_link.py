"""A Flower SuperLink on this machine for one run, the current Flower way (`flwr run` against a SuperLink; the
`run_simulation` function is deprecated since Flower 1.42): the SuperLink is started on a free loopback port with
its own FLWR_HOME, `flwr run` sends the shipped Flower App to it, and the SuperLink's whole process group is ended
by its pid afterwards (a SuperLink keeps running after a run; its simulation runtime starts Ray workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecl.errors import EdgeclError

CONNECTION = "edgecl-local"  # the SuperLink connection `flwr run` is given, in the run's own FLWR_HOME
APP_DIR = Path(__file__).parent / "flower_app"  # the Flower App (its pyproject.toml names edgecl's apps)
STOP_GRACE_S = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    """Until something listens on 127.0.0.1:port; an error after timeout_s or when `process` ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise EdgeclError(f"the Flower SuperLink exited (code {process.returncode}) before it listened")
        time.sleep(0.2)
    raise EdgeclError(f"the Flower SuperLink did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def tools_dir() -> Path:
    """Where this Python's Flower commands (flower-superlink, flwr, flwr-simulation) are."""
    return Path(sys.executable).parent


@dataclass(frozen=True)
class LocalLink:
    """A running SuperLink: its port, its FLWR_HOME and the environment its tools run in."""

    port: int
    home: Path
    env: dict[str, str]


@contextlib.contextmanager
def local_superlink(workdir: Path, simulation: bool, log_path: Path | None = None) -> Iterator[LocalLink]:
    """A SuperLink on a free loopback port (`simulation`: with Flower's simulation runtime, which runs the ClientApps
    itself) with FLWR_HOME in `workdir`, ended with its whole process group on the way out."""
    home = workdir / ".flwr"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                      f'address = "127.0.0.1:{port}"\ninsecure = true\n')  # fmt: skip
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{tools_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}  # edgecl is installed here: nothing to install
    args = [str(tools_dir() / "flower-superlink"), "--insecure", "--database", ":flwr-in-memory:", "--host",
            "127.0.0.1", "--port", str(port), *(["--simulation"] if simulation else [])]  # fmt: skip
    with open(log_path or os.devnull, "ab") as log:
        link = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, 60, link)
        yield LocalLink(port, home, env)
    finally:
        stop_group(link)
        stop_strays(home)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group (it was started in a session of its own), SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_strays(home: Path) -> None:
    """End what is left of a run once its SuperLink has exited: members of its group that outlive the leader and
    processes that left the group (Flower's simulation runs ClientApps in Ray actors, which outlive the SuperLink for
    a while) all carry the run's FLWR_HOME. SIGTERM, then SIGKILL after the grace."""
    import psutil

    def strays() -> list[Any]:
        found = []
        for candidate in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if candidate.environ().get("FLWR_HOME") == str(home) and candidate.status() != psutil.STATUS_ZOMBIE:
                    found.append(candidate)
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = strays()
        if not left:
            return
        for process in left:
            with contextlib.suppress(psutil.Error, OSError):
                process.send_signal(sig)
        psutil.wait_procs(left, timeout=STOP_GRACE_S)


def flwr_run(link: LocalLink, run_config: Path, timeout_s: float, federation_config: str = "",
             ) -> subprocess.CompletedProcess:  # fmt: skip
    """`flwr run` of the shipped Flower App on `link`, streamed to its end (it exits 0 even when the run failed:
    the caller reads the ServerApp's result file to know)."""
    args = [str(tools_dir() / "flwr"), "run", str(APP_DIR), CONNECTION, "--stream", "--run-config", str(run_config)]
    if federation_config:
        args += ["--federation-config", federation_config]
    try:
        return subprocess.run(args, env=link.env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EdgeclError(f"the fleet run did not end within {timeout_s:.0f} s") from exc
