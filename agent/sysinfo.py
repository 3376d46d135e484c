"""Facts about this host (for the broker's inventory) and periodic metrics.

Everything is read from ``/proc``, ``/etc/os-release`` and a few syscalls; nothing here
runs a subprocess (no ``ip``, no ``df``), because the agent must stay small and must not
depend on what is installed. Results are plain JSON-able dicts. ``changed`` tells the
connection layer whether the inventory needs re-sending, ignoring fields that move all
the time (uptime, load, free space).

This module must never raise because one source is missing or odd (containers hide
things): a missing fact is ``None`` or left out, never a crashed agent.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from agent import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MetricsSampler",
    "addresses",
    "changed",
    "disks",
    "os_release",
    "system_info",
]

# Filesystems that hold data people care about; pseudo filesystems are left out.
REAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "vfat", "exfat", "ntfs",
     "ntfs3", "jfs", "reiserfs", "bcachefs", "nfs", "nfs4", "cifs", "overlay"}
)  # fmt: skip
VOLATILE_KEYS = frozenset(
    {"uptime_seconds", "load_average", "free_bytes", "available_bytes", "used_percent"}
)
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B

if TYPE_CHECKING:
    Info = dict[str, Any]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def os_release(etc: str = "/etc") -> dict[str, str | None]:
    """``ID``, ``VERSION_ID`` and ``PRETTY_NAME`` from os-release (unquoted)."""
    text = _read(os.path.join(etc, "os-release")) or _read("/usr/lib/os-release") or ""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            values[key] = value
    return {
        "id": values.get("ID"),
        "version_id": values.get("VERSION_ID"),
        "pretty_name": values.get("PRETTY_NAME"),
    }


def _meminfo(proc: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(os.path.join(proc, "meminfo")) or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def _mount_path(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def disks(proc: str = "/proc") -> list[Info]:
    """Mounted real filesystems with their size and free space, one per device."""
    result: list[Info] = []
    seen: set[str] = set()
    for line in (_read(os.path.join(proc, "mounts")) or "").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = parts[0], _mount_path(parts[1]), parts[2]
        if fstype not in REAL_FILESYSTEMS or device in seen:
            continue
        if fstype == "overlay" and mount != "/":
            continue
        try:
            if not os.path.isdir(mount):
                continue  # a bind-mounted file such as a container's /etc/hosts
            stat = os.statvfs(mount)
        except OSError:
            continue
        seen.add(device)
        total = stat.f_blocks * stat.f_frsize
        free = stat.f_bavail * stat.f_frsize
        used = total - stat.f_bfree * stat.f_frsize
        result.append(
            {
                "mount": mount,
                "device": device,
                "fstype": fstype,
                "total_bytes": total,
                "free_bytes": free,
                # df's definition: used / (used + available to unprivileged users).
                "used_percent": round(100.0 * used / (used + free), 1) if used + free else 0.0,
            }
        )
    return result


def _ipv4(name: str) -> tuple[str, int] | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        request = struct.pack("256s", name.encode()[:15])
        address = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)[20:24]
        mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, request)[20:24]
    except OSError:
        return None  # no IPv4 address on this interface
    finally:
        sock.close()
    prefix = bin(struct.unpack("!I", mask)[0]).count("1")
    return socket.inet_ntoa(address), prefix


def addresses(proc: str = "/proc") -> list[Info]:
    """Non-loopback IPv4 (primary, via SIOCGIFADDR) and IPv6 addresses per interface."""
    result: list[Info] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    for name in names:
        found = _ipv4(name)
        if found and not found[0].startswith("127."):
            result.append(
                {"interface": name, "family": "inet", "address": found[0], "prefix": found[1]}
            )
    for line in (_read(os.path.join(proc, "net", "if_inet6")) or "").splitlines():
        parts = line.split()
        if len(parts) != 6 or len(parts[0]) != 32:
            continue
        try:
            address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(parts[0]))
            prefix = int(parts[2], 16)
        except ValueError:
            continue
        if address == "::1":
            continue
        result.append({"interface": parts[5], "family": "inet6", "address": address,
                       "prefix": prefix})  # fmt: skip
    return result


def _uptime(proc: str) -> float | None:
    text = _read(os.path.join(proc, "uptime"))
    try:
        return float(text.split()[0]) if text else None
    except (ValueError, IndexError):
        return None


def _load(proc: str) -> list[float] | None:
    text = _read(os.path.join(proc, "loadavg"))
    try:
        return [float(x) for x in text.split()[:3]] if text else None
    except ValueError:
        return None


def system_info(proc: str = "/proc", etc: str = "/etc") -> Info:
    """The host's inventory record, as sent to the broker after connecting."""
    uname = os.uname()
    return {
        "platform": os_release(etc),
        "kernel": {"system": uname.sysname, "release": uname.release, "machine": uname.machine},
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": _meminfo(proc).get("MemTotal"),
        "disks": disks(proc),
        "load_average": _load(proc),
        "uptime_seconds": _uptime(proc),
        "addresses": addresses(proc),
        "agent_version": __version__,
    }


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def changed(old: Info | None, new: Info) -> bool:
    """True when ``new`` differs from ``old`` in anything but the volatile fields."""
    return old is None or _stable(old) != _stable(new)


class MetricsSampler:
    """Periodic metrics; CPU percent is measured between consecutive ``sample`` calls.

    The first sample's CPU percent covers the time since boot.
    """

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._last_cpu: tuple[int, int] | None = None

    def _cpu_times(self) -> tuple[int, int] | None:
        text = _read(os.path.join(self._proc, "stat")) or ""
        for line in text.splitlines():
            fields = line.split()
            if fields and fields[0] == "cpu":
                try:
                    values = [int(x) for x in fields[1:]]
                except ValueError:
                    return None
                # user nice system idle iowait irq softirq steal; guest is inside user.
                counted = values[:8]
                idle = sum(values[3:5])
                return sum(counted), idle
        return None

    def _cpu_percent(self) -> float | None:
        now = self._cpu_times()
        if now is None:
            return None
        before = self._last_cpu or (0, 0)
        self._last_cpu = now
        total, idle = now[0] - before[0], now[1] - before[1]
        if total <= 0:
            return 0.0
        return round(100.0 * (total - idle) / total, 1)

    def sample(self) -> Info:
        memory = _meminfo(self._proc)
        total = memory.get("MemTotal")
        available = memory.get("MemAvailable")
        memory_used = memory_available = None
        if total and available is not None:
            memory_available = round(100.0 * available / total, 1)
            memory_used = round(100.0 - memory_available, 1)
        loads = _load(self._proc) or []
        load: list[float | None] = [*loads, None, None, None][:3]
        return {
            "cpu_percent": self._cpu_percent(),
            "memory_used_percent": memory_used,
            "memory_available_percent": memory_available,
            "disk_used_percent": {d["mount"]: d["used_percent"] for d in disks(self._proc)},
            "load1": load[0],
            "load5": load[1],
            "load15": load[2],
        }
