"""System info and metrics: JSON-able shapes, parsing of /proc fixtures, change detection."""

from __future__ import annotations

import json
from pathlib import Path

from agent import __version__
from agent.sysinfo import MetricsSampler, changed, disks, os_release, system_info


def test_system_info_shape() -> None:
    info = system_info()
    json.dumps(info)
    assert set(info) == {
        "platform", "kernel", "hostname", "cpu_count", "memory_total_bytes", "disks",
        "load_average", "uptime_seconds", "addresses", "agent_version",
    }  # fmt: skip
    assert info["agent_version"] == __version__
    assert info["kernel"]["system"] == "Linux"
    assert info["memory_total_bytes"] > 0
    assert info["cpu_count"] >= 1
    assert len(info["load_average"]) == 3
    assert info["uptime_seconds"] > 0
    for disk in info["disks"]:
        assert disk["total_bytes"] >= disk["free_bytes"] >= 0
    for address in info["addresses"]:
        assert address["family"] in ("inet", "inet6")
        assert address["address"] not in ("::1",)


def test_changed_ignores_volatile_fields() -> None:
    old = system_info()
    new = json.loads(json.dumps(old))
    new["uptime_seconds"] += 100
    new["load_average"] = [9.0, 9.0, 9.0]
    for disk in new["disks"]:
        disk["free_bytes"] //= 2
        disk["used_percent"] = 99.0
    assert not changed(old, new)
    new["hostname"] = "renamed"
    assert changed(old, new)
    assert changed(None, new)


def fake_proc(root: Path, stat_line: str) -> Path:
    proc = root / "proc"
    proc.mkdir(exist_ok=True)
    (proc / "stat").write_text(stat_line + "\ncpu0 1 2 3 4\n")
    (proc / "meminfo").write_text("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:   250 kB\n")
    (proc / "loadavg").write_text("0.50 0.25 0.10 1/100 1234\n")
    (proc / "mounts").write_text(
        f"/dev/sda1 {root} ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sda1 /tmp ext4 rw 0 0\n"
    )
    return proc


def test_metrics_from_proc(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "cpu  100 0 100 800 0 0 0 0 0 0")
    sampler = MetricsSampler(str(proc))
    first = sampler.sample()
    json.dumps(first)
    assert first["cpu_percent"] == 20.0
    assert first["memory_available_percent"] == 25.0
    assert first["memory_used_percent"] == 75.0
    assert (first["load1"], first["load5"], first["load15"]) == (0.5, 0.25, 0.1)
    assert list(first["disk_used_percent"]) == [str(tmp_path)]  # one entry per device
    fake_proc(tmp_path, "cpu  150 0 150 900 0 0 0 0 0 0")
    assert sampler.sample()["cpu_percent"] == 50.0  # (100 busy) / (200 total) since last


def test_real_metrics_shape() -> None:
    sample = MetricsSampler().sample()
    json.dumps(sample)
    assert 0 <= sample["cpu_percent"] <= 100
    assert 0 < sample["memory_used_percent"] < 100


def test_os_release_parsing(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text(
        'ID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n# x=y\n'
    )
    assert os_release(str(tmp_path)) == {
        "id": "ubuntu", "version_id": "22.04", "pretty_name": "Ubuntu 22.04.4 LTS",
    }  # fmt: skip


def test_missing_proc_is_not_fatal(tmp_path: Path) -> None:
    assert disks(str(tmp_path)) == []
    sample = MetricsSampler(str(tmp_path)).sample()
    assert sample["cpu_percent"] is None
    assert sample["load1"] is None
