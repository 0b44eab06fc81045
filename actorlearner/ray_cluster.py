"""The Ray instance a --backend ray run uses: started on this machine for the run (loopback only, shut down
at the end) or joined (a running cluster, left running), with a one-line error for a head that does not
answer, and the clean-up of what Ray leaves behind: the session directory of the instance a run started, and
the agent processes and session directories of killed runs. `ray_backend` runs the actors on it."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from typing import Optional

from .config import ConfigError
from .reporting import say, warn
from .transport import pid_alive


class RayCluster:
    """The Ray instance a run uses: started here for the run (address "") or joined ('auto', HOST:PORT)."""

    def __init__(self, address: str, num_cpus: int):
        self.address, self.num_cpus = address, num_cpus
        self.connected = False
        self.started = False  # ray.init was called (connected: it returned); a Ctrl-C inside it may leave Ray's
        # processes half started
        self.session_dir = ""  # the directory of the instance started here (logs, sockets): removed at the end

    def start(self) -> None:
        """Starts or joins Ray (check_reachable first: before the run directory is made). Call it before
        installing the run's signal handlers: ray.init sets its own SIGTERM handler."""
        import ray

        # No usage report from a run (nothing outside may be reachable, and a run should not phone home).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        quiet = {"logging_level": logging.ERROR, "log_to_driver": True}
        self.started = True
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                for pid in remove_orphaned_ray_agents():
                    say(f"removed a Ray agent process left by a killed run (pid {pid})")
                # The run's own instance listens on the loopback address only: nothing outside needs to reach it.
                # (Ray's single-machine mode, which it uses on macOS and Windows: every address is loopback.)
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                # "local": always a new instance. With no address, ray.init joins the one RAY_ADDRESS or
                # /tmp/ray/ray_current_cluster names (left there by `ray start` or ray.cluster_utils, even once
                # that instance is gone): a run meant to be alone would share, or fail to reach, someone else's.
                context = ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, **quiet)
                self._mark_session(context.address_info.get("session_dir") or "")
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = f"join the Ray cluster at {self.address}" if self.address else "start a local Ray instance"
            raise ConfigError(f"could not {where}: {first}") from None
        self.connected = True

    def _mark_session(self, session_dir: str) -> None:
        """Marks the new instance's session directory as this run's, and removes those of killed runs beside it.
        Ray leaves every session directory behind (~300 KB of logs and sockets each, in /tmp/ray): a run's goes
        at its end, and a killed run's when the next run starts Ray."""
        if not os.path.isdir(session_dir):
            return
        self.session_dir = session_dir
        try:
            with open(os.path.join(session_dir, SESSION_MARK), "w") as f:
                f.write(str(os.getpid()))
        except OSError:  # unmarked, it is still removed at the end; only a kill would leave it
            pass
        for stale in remove_stale_ray_sessions(os.path.dirname(session_dir)):
            say(f"removed the Ray session directory of a killed run ({stale})")

    def describe(self, num_actors: int, cpus_per_actor: int) -> str:
        """The start-up line about the cluster; warns when the actors will not all find a CPU."""
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if num_actors * cpus_per_actor > cpus:
            warn(f"{num_actors} actors of {cpus_per_actor} CPU each need more than the cluster's {cpus} CPUs: "
                 f"those that find none wait (and are reported as stalled); set --num-actors")
        how = f"joined {self.address}" if self.address else "a local instance started for this run"
        return f"Ray: {how}, {len(nodes)} node{'s' if len(nodes) != 1 else ''}, {cpus} CPU{'s' if cpus != 1 else ''}"

    def close(self) -> None:
        """Shuts a Ray instance we started down; from a joined cluster we only disconnect. Safe to call twice, and
        after a start that failed or was interrupted (ray.shutdown stops what ray.init had started)."""
        if self.started:
            import ray

            # ray.init stopped midway by a Ctrl-C had started the node's processes without handing them to
            # Ray's shutdown: its two agents lived on, reparented (seen: SIGINT 3.5 s into a run's start).
            midway = not self.connected and not self.address
            started_here = [p for p in _descendants(os.getpid()) if _is_ray_process(p)] if midway else []
            self.connected = self.started = False
            ray.shutdown()
            _stop(started_here)
            if midway:  # its session directory was made, but ray.init did not live to tell us where
                for path in own_sessions(ray_temp_root(), os.getpid()):
                    remove_session(path)
        if self.session_dir:
            remove_session(self.session_dir)
            self.session_dir = ""


# The file that marks a Ray session directory as a run's; it holds the learner's PID.
SESSION_MARK = "actorlearner.pid"


def _session_dirs(root: str) -> list[str]:
    """The session directories under Ray's temp root `root` (not its session_latest link)."""
    names = os.listdir(root) if os.path.isdir(root) else []
    paths = [os.path.join(root, n) for n in names if n.startswith("session_")]
    return [path for path in paths if not os.path.islink(path)]


def ray_sessions(root: str) -> dict[str, int]:
    """The session directories under Ray's temp root `root` that runs of ours started, with their learners' PIDs.
    Sessions that Ray users started themselves have no mark, and are never touched."""
    found = {}
    for path in _session_dirs(root):
        try:
            with open(os.path.join(path, SESSION_MARK)) as f:
                found[path] = int(f.read().strip())
        except (OSError, ValueError):
            continue
    return found


def own_sessions(root: str, pid: int) -> list[str]:
    """The session directories under `root` that process `pid` started: Ray names them session_<time>_<pid>."""
    return [path for path in _session_dirs(root) if path.endswith(f"_{pid}")]


def ray_temp_root() -> str:
    """Where Ray puts its session directories (/tmp/ray unless RAY_TMPDIR or TMPDIR say otherwise)."""
    try:
        from ray._common.utils import get_default_ray_temp_dir

        return get_default_ray_temp_dir()
    except ImportError:  # a Ray that moved it: its usual place
        return os.path.join(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp", "ray")


def remove_stale_ray_sessions(root: str) -> list[str]:
    """Removes the session directories of runs of ours whose learner is gone (killed: no cleanup ran), and
    returns them."""
    stale = [path for path, pid in ray_sessions(root).items() if not pid_alive(pid)]
    for path in stale:
        remove_session(path)
    return stale


def remove_session(path: str) -> None:
    """Removes a session directory, and Ray's session_latest link where it points there."""
    shutil.rmtree(path, ignore_errors=True)
    latest = os.path.join(os.path.dirname(path), "session_latest")
    try:
        if os.path.realpath(latest) == os.path.realpath(path):
            os.unlink(latest)
    except OSError:
        pass


# Ray's per-node helper processes, as their titles read, and as their command lines read before they set their
# titles (~1 s into their start: a run killed inside ray.init can leave them that way).
_RAY_AGENTS = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")
_RAY_AGENT_SCRIPTS = (b"ray/dashboard/agent.py", b"ray/_private/runtime_env/agent/main.py")


def _is_ray_agent(cmd: bytes) -> bool:
    """cmd: a command line, its arguments joined by NULs. An argument that *is* an agent's script, not an option
    that holds its path: the raylet's own command line names both scripts (--dashboard_agent_command=python -u
    .../agent.py ...), and a run starting beside another Ray instance killed that instance's raylet."""
    return cmd.startswith(_RAY_AGENTS) or any(arg.endswith(script) and not arg.startswith(b"-")
                                              for arg in cmd.split(b"\0") for script in _RAY_AGENT_SCRIPTS)


def remove_orphaned_ray_agents() -> list[int]:
    """Kills Ray's node agents whose raylet is gone, and returns their PIDs. When a learner that started Ray is
    killed (SIGKILL: no cleanup runs), Ray's servers and our actors go with it, but its two agent processes are
    reparented and live on; the next run that starts Ray removes them (as transport.remove_stale_segments does
    for shared memory). An agent whose parent is still a raylet (a cluster that is up) is left alone."""
    removed = []
    for pid in _pids():
        if not _is_ray_agent(_cmdline(pid) or b""):
            continue
        parent = _parent(pid)
        parent_cmd = _cmdline(parent) if parent is not None else None
        if parent_cmd is None or b"raylet" in parent_cmd:  # a raylet's (a cluster that is up), or not known
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        removed.append(pid)
    return removed


def _descendants(pid: int) -> list[int]:
    """The PIDs of `pid`'s child processes and theirs, from /proc (none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for entry in _pids():
        children.setdefault(_parent(entry), []).append(entry)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _is_ray_process(pid: int) -> bool:
    """Whether `pid` is one of Ray's node processes (its servers, agents and workers), by its command line."""
    cmd = _cmdline(pid) or b""
    return any(mark in cmd for mark in (b"ray::", b"gcs_server", b"raylet", b"ray/_private/", b"ray/dashboard/"))


def _pids() -> list[int]:
    """The PIDs in /proc (none where there is no /proc)."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit()] if os.path.isdir("/proc") else []


def _cmdline(pid: int) -> Optional[bytes]:
    """pid's command line (arguments joined by NULs); None where it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def _parent(pid: int) -> Optional[int]:
    """pid's parent PID, from /proc/PID/stat (after the command name, which may hold spaces and parentheses);
    None where it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _stop(pids: list[int], grace_s: float = 2.0) -> None:
    """SIGKILLs those of `pids` still alive after grace_s (Ray's own shutdown stops most of them first)."""
    deadline = time.monotonic() + grace_s
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if not _gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            _gone(pid)


def _gone(pid: int) -> bool:
    """Whether `pid` has exited; reaps it where it is our child (a zombie left unreaped outlives us, reparented)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True
    except ChildProcessError:  # not our child (an agent of the raylet), or reaped already
        pass
    return not pid_alive(pid)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raises ConfigError unless HOST:PORT (as config_checks validates it; "" and 'auto' pass) accepts a connection:
    ray.init retries an unreachable head for a minute or more, and a mistyped address deserves a one-line error
    at once, before the run directory is made."""
    import socket

    if address in ("", "auto"):
        return
    host, _, port = address.rpartition(":")
    try:  # where Ray will really connect: it replaces a loopback host by this machine's address
        from ray._private.services import resolve_ip_for_localhost

        host = resolve_ip_for_localhost(host)
    except Exception:  # noqa: BLE001 - a private helper of Ray's: without it, check the address as given
        pass
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"could not join the Ray cluster at {address}: nothing answers there ({e.strerror or e}); "
                          f"is `ray start --head` running on it?") from None
