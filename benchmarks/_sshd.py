"""Two private OpenSSH servers on loopback (a target and a bastion), for the comparison.

Debian's ``/usr/sbin/sshd`` (package ``openssh-server``) runs as a foreground process
(``sshd -D -e -f CONFIG``) with its own host key, ``authorized_keys``, pid file and port in
a temporary folder, bound to 127.0.0.1; the system's sshd configuration is never read or
touched. The client side is a private ``ssh_config`` (``ssh -F``) with its own key and
``known_hosts``, so ``ssh target`` and ``ssh -J bastion target`` are real one- and
two-hop paths that never prompt. PAM stays on (Debian's default), because the account the
terminals log in as has a locked password, which sshd refuses without PAM.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["OpenSSH", "SshdMissing", "start_openssh"]

SSHD = "/usr/sbin/sshd"

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {folder}/sshd-{name}.pid
AuthorizedKeysFile {folder}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
PrintMotd no
PrintLastLog no
Banner none
UseDNS no
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
LogLevel ERROR
"""

SSH_CONFIG = """\
Host target bastion
  HostName 127.0.0.1
  User {user}
  IdentityFile {folder}/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile {folder}/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlMaster no
  ControlPath none
  EscapeChar none
  LogLevel ERROR
Host target
  Port {target_port}
Host bastion
  Port {bastion_port}
"""


class SshdMissing(Exception):
    """openssh-server / openssh-client are not installed."""


@dataclass
class OpenSSH:
    folder: Path
    user: str
    target_port: int
    bastion_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.folder / "ssh_config"

    def argv(self, *, jump: bool) -> list[str]:
        """``ssh -tt`` to the target, directly or through the bastion (``-J``)."""
        base = ["ssh", "-F", str(self.config), "-tt"]
        return [*base, "-J", "bastion", "target"] if jump else [*base, "target"]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}")


def start_openssh(folder: Path, user: str) -> OpenSSH:
    """Generate keys and configs in ``folder`` and start the target and bastion sshd."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        raise SshdMissing("apt-get install -y openssh-server openssh-client")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # sshd reads authorized_keys as the user
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    pwd.getpwnam(user)
    public = _keygen(folder / "id_ed25519", "corral-bench")
    authorized = folder / "authorized_keys"
    authorized.write_text(public + "\n")
    authorized.chmod(0o644)
    host_public = _keygen(folder / "host_ed25519", "corral-bench-host")
    ssh = OpenSSH(folder, user, _free_port(), _free_port())
    known = [f"[127.0.0.1]:{port} {host_public}" for port in (ssh.target_port, ssh.bastion_port)]
    (folder / "known_hosts").write_text("\n".join(known) + "\n")
    ssh.config.write_text(
        SSH_CONFIG.format(
            user=user,
            folder=folder,
            target_port=ssh.target_port,
            bastion_port=ssh.bastion_port,
        )
    )
    log = (folder / "sshd.log").open("ab")
    try:
        for name, port in (("target", ssh.target_port), ("bastion", ssh.bastion_port)):
            config = folder / f"sshd_{name}.conf"
            config.write_text(
                SSHD_CONFIG.format(
                    port=port,
                    host_key=folder / "host_ed25519",
                    folder=folder,
                    name=name,
                    user=user,
                )
            )
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
            ssh.processes.append(process)
            _wait_listening(port, process)
    except BaseException:
        ssh.stop()
        raise
    finally:
        log.close()
    return ssh
