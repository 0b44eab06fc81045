"""What a run ran on: the versions of the packages that decide its numbers and its speed, the CPU, its cores and
its bfloat16 hardware. Recorded in summary.json ("system"), so runs from two machines or two installs can be told
apart, and printed by `actorlearner info` for a bug report. Imports no TensorFlow (package versions come from
their installed metadata: ~40 ms for all of them here)."""

from __future__ import annotations

import os
import platform

from .config import usable_cores
from .precision import bf16_hardware, cpuinfo_field
from .transport import shared_memory_free

# The packages whose versions change a run's results or speed; None where one is not installed.
PACKAGES = ("actorlearner", "tensorflow", "keras", "gymnasium", "numpy", "ml_dtypes", "ale-py", "ai-edge-litert",
            "envpool", "mujoco", "minigrid", "ray")


def package_versions() -> dict[str, str | None]:
    from importlib import metadata  # here, not at import: ~5 ms off every run's start-up

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; platform.processor() elsewhere, which may be empty)."""
    return cpuinfo_field("model name", path) or platform.processor()


def system_info() -> dict:
    free = shared_memory_free()
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "cores_usable": usable_cores(), "bf16_hardware": bf16_hardware(),
            "shm_free_mb": None if free is None else round(free / 2**20), "packages": package_versions()}


def describe(info: dict) -> list[str]:
    """`actorlearner info`'s lines."""
    cores = f"{info['cores_usable']} of {info['cores']} cores usable" if info["cores_usable"] != info["cores"] else (
        f"{info['cores']} cores")
    shm = "no /dev/shm" if info["shm_free_mb"] is None else f"/dev/shm {info['shm_free_mb']:,} MB free"
    installed = [f"{name} {v}" for name, v in info["packages"].items() if v is not None]
    missing = [name for name, v in info["packages"].items() if v is None]
    return [f"Python {info['python']} on {info['platform']}",
            f"CPU: {info['cpu'] or 'unknown'}, {cores}, bfloat16 hardware: {info['bf16_hardware'] or 'none'}; {shm}",
            "packages: " + ", ".join(installed),
            "not installed: " + (", ".join(missing) if missing else "-")]
