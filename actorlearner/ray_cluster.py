"""The Ray instance a --backend ray run uses: started on this machine for the run (loopback only, shut down
at the end) or joined (a running cluster, left running), with a one-line error for a head that does not
answer, and the clean-up of Ray agent processes that a killed run left behind. `ray_backend` runs the actors
on it."""

from __future__ import annotations

import logging
import os
import signal

from .config import ConfigError
from .reporting import say, warn


class RayCluster:
    """The Ray instance a run uses: started here for the run (address "") or joined ('auto', HOST:PORT)."""

    def __init__(self, address: str, num_cpus: int):
        self.address, self.num_cpus = address, num_cpus
        self.connected = False

    def start(self) -> None:
        """Starts or joins Ray (check_reachable first: before the run directory is made). Call it before
        installing the run's signal handlers: ray.init sets its own SIGTERM handler."""
        import ray

        # No usage report from a run (nothing outside may be reachable, and a run should not phone home).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        quiet = {"logging_level": logging.ERROR, "log_to_driver": True}
        try:
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                for pid in remove_orphaned_ray_agents():
                    say(f"removed a Ray agent process left by a killed run (pid {pid})")
                # The run's own instance listens on the loopback address only: nothing outside needs to reach it.
                # (Ray's single-machine mode, which it uses on macOS and Windows: every address is loopback.)
                os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = f"join the Ray cluster at {self.address}" if self.address else "start a local Ray instance"
            raise ConfigError(f"could not {where}: {first}") from None
        self.connected = True

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
        """Shuts a Ray instance we started down; from a joined cluster we only disconnect. Safe to call twice."""
        if self.connected:
            import ray

            self.connected = False
            ray.shutdown()


# Ray's per-node helper processes, as their titles read.
_RAY_AGENTS = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")


def remove_orphaned_ray_agents() -> list[int]:
    """Kills Ray's node agents whose raylet is gone, and returns their PIDs. When a learner that started Ray is
    killed (SIGKILL: no cleanup runs), Ray's servers and our actors go with it, but its two agent processes are
    reparented and live on; the next run that starts Ray removes them (as transport.remove_stale_segments does
    for shared memory). An agent whose parent is still a raylet (a cluster that is up) is left alone."""
    removed = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if not f.read().startswith(_RAY_AGENTS):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{parent}/cmdline", "rb") as f:
                if b"raylet" in f.read():
                    continue
            os.kill(int(entry), signal.SIGKILL)
            removed.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return removed


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raises ConfigError unless HOST:PORT (as config validates it; "" and 'auto' pass) accepts a connection:
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
