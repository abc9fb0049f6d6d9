"""What a kubelet and the bridge CNI change on the host, recorded before the dev cluster starts and undone by
``vigil dev cluster down``.

Measured here (FACTS.md): the kubelet sets ``vm.overcommit_memory``, ``kernel.panic`` and ``kernel.panic_on_oops``,
the bridge plugin sets ``net.ipv4.ip_forward``; the kubelet creates a few fixed paths whatever its root dir
(``/var/lib/kubelet/device-plugins``, ``/var/log/containers``; containerd's CNI cache ``/var/lib/cni``), bind-mounts
its root dir onto itself, makes the ``kubepods`` cgroups, and the bridge plugin makes the bridge. The first ``up``
writes a :class:`HostSnapshot` of the sysctls and of which fixed paths were absent; ``down`` restores the one,
removes the others, unmounts everything under the cluster's directory and removes the cgroups and the bridge.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from vigil.devstack.errors import DevStackError

SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops", "net.ipv4.ip_forward")
FIXED_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/var/lib/cni")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_KUBEPODS = "kubepods"


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """The host as it was before the first ``up``: sysctl values, and the fixed paths that did not exist."""

    sysctls: dict[str, str]
    absent_paths: list[str]

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls({name: _read_sysctl(name) for name in SYSCTLS},
                   [path for path in FIXED_PATHS if not Path(path).exists()])

    @classmethod
    def load_or_take(cls, file: Path) -> HostSnapshot:
        """The snapshot in ``file``; a new one (written there) if none was taken since the last ``down``."""
        if file.exists():
            return cls(**json.loads(file.read_text()))
        snapshot = cls.take()
        file.write_text(json.dumps(asdict(snapshot), indent=1) + "\n")
        return snapshot


def restore(file: Path, cluster_dir: Path, bridge: str) -> list[str]:
    """Undo the cluster's host changes (see the module docstring); what was undone, one line each. The snapshot
    file goes last, so a ``down`` that failed halfway is finished by the next one."""
    undone = unmount_under(cluster_dir)
    undone += remove_cgroups(_KUBEPODS)
    if delete_link(bridge):
        undone.append(f"deleted the bridge {bridge}")
    if file.exists():
        snapshot = HostSnapshot(**json.loads(file.read_text()))
        undone += _restore_sysctls(snapshot.sysctls)
        for path in snapshot.absent_paths:
            if Path(path).exists():
                shutil.rmtree(path)
                undone.append(f"removed {path}")
        file.unlink()
    return undone


def unmount_under(directory: Path) -> list[str]:
    """Unmount every mount at or below ``directory``, deepest first (the kubelet's bind mount of its root dir,
    pod volumes, network namespaces, container root filesystems)."""
    prefix = str(directory.resolve())
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    ours = sorted({m for m in mounts if m == prefix or m.startswith(prefix + "/")}, key=len, reverse=True)
    for target in ours:
        done = subprocess.run(["umount", target], capture_output=True, text=True, check=False)
        if done.returncode:  # busy: detach it now, the kernel frees it when its last user goes
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    return [f"unmounted {target}" for target in ours]


def remove_cgroups(name: str) -> list[str]:
    """Remove the cgroup ``/<name>`` and its descendants in every hierarchy (v1 controllers and v2), deepest
    first; they must be empty, so the containers must be gone."""
    removed = []
    for hierarchy in _hierarchies():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for cgroup in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            _rmdir(cgroup)
        _rmdir(top)
        removed.append(f"removed the cgroup {top}")
    return removed


def delete_link(name: str) -> bool:
    """Delete network link ``name`` if it exists (the CNI bridge; its veths went with the pods' namespaces)."""
    if not Path(f"/sys/class/net/{name}").exists():
        return False
    done = subprocess.run(["ip", "link", "delete", name], capture_output=True, text=True, check=False)
    if done.returncode:
        raise DevStackError(f"ip link delete {name}: {done.stderr.strip()}")
    return True


def _hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies: each v1 controller's and the v2 one (``unified`` on a hybrid host)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        mount_point = fields.split()[4]
        if rest.split()[:1] in (["cgroup"], ["cgroup2"]) and mount_point.startswith(str(_CGROUP_ROOT)):
            found.append(Path(mount_point))
    return found


def _rmdir(cgroup: Path) -> None:
    try:
        cgroup.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DevStackError(f"cannot remove the cgroup {cgroup} ({exc.strerror}): a process still runs in it; "
                            f"see {cgroup}/cgroup.procs") from exc


def _restore_sysctls(values: dict[str, str]) -> list[str]:
    restored = []
    for name, value in values.items():
        if _read_sysctl(name) != value:
            _sysctl_path(name).write_text(value + "\n")
            restored.append(f"restored {name} = {value}")
    return restored


def _read_sysctl(name: str) -> str:
    return _sysctl_path(name).read_text().strip()


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")
