"""A real one-node SLURM (munged + slurmctld + slurmd) living in one folder, for tests.

Usage::

    with SlurmCluster(tmp_path / "slurm") as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env())

or by hand, to try the slurm profile: ``python tests/slurm/cluster.py /tmp/slurm`` starts it
and prints the ``SLURM_CONF`` to export; Ctrl-C stops it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
PARTITION = "omama"
# Where SLURM clients look when SLURM_CONF is unset. The slurm executor's job step drops every
# SLURM_* variable (SLURM_CONF too) before its nested `srun`, so, as on a real cluster, the
# config must be at this standard path; the test cluster links it there while it runs.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def missing_binaries() -> list[str]:
    """The SLURM/munge programs this module needs that are not on PATH (or in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
    return int(total_kb / 1024 * 0.8)


def _abandoned(conf: Path) -> bool:
    """True if ``conf`` is gone, or is a test cluster's config whose slurmctld no longer runs."""
    if not conf.is_file():
        return True
    if "ClusterName=omama-test" not in conf.read_text():
        return False
    try:
        os.kill(int((conf.parent / "slurmctld.pid").read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return True
    return False


class SlurmCluster:
    """munged, slurmctld and slurmd started from ``root``; stopped by PID on exit."""

    def __init__(self, root: Path, cpus: int = 2, partition: str = PARTITION):
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.partition = partition
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self._procs: dict[str, subprocess.Popen] = {}
        self._linked = False
        self._sbin = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

    def env(self) -> dict[str, str]:
        """The environment under which SLURM clients (sbatch, squeue, snakemake) see this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": self._sbin}

    def _write_files(self) -> None:
        for d in ("munge", "state", "spool/slurmd", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        template = string.Template((HERE / "slurm.conf.in").read_text())
        self.conf.write_text(
            template.substitute(
                root=self.root,
                host=self.host,
                user=getpass.getuser(),
                cpus=self.cpus,
                mem_mb=_memory_mb(),
                partition=self.partition,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
            )
        )

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and _abandoned(SYSTEM_CONF.resolve()):
            SYSTEM_CONF.unlink()  # left by a test cluster that was killed
        try:
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SYSTEM_CONF.symlink_to(self.conf)
        except FileExistsError:
            raise RuntimeError(
                f"{SYSTEM_CONF} already exists (a real SLURM, or another test cluster running): "
                "the test cluster does not replace it"
            ) from None
        self._linked = True

    def _unlink_system_conf(self) -> None:
        if self._linked and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == self.conf:
            SYSTEM_CONF.unlink()
        self._linked = False

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self._procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
            start_new_session=True,
        )
        log.close()

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"SLURM test cluster: {what} not ready after {timeout:.0f} s:\n{self.logs()}")

    def _ok(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=30)

    def start(self, timeout: float = 90) -> SlurmCluster:
        """Write the config, start the three daemons and wait until the node is idle."""
        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"SLURM test cluster needs {', '.join(missing)} (bash .ci/slurm-setup.sh install)")
        self._write_files()
        self._link_system_conf()
        m = self.root / "munge"
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={m}/munge.socket",
                f"--key-file={m}/munge.key",
                f"--pid-file={m}/munged.pid",
                f"--log-file={m}/munged.log",
                f"--seed-file={m}/munged.seed",
            ],
        )
        self._wait("munged", lambda: (m / "munge.socket").exists(), timeout)
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self._ok("scontrol", "ping").stdout.count("UP") > 0, timeout)
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.host])
        self._wait("slurmd", lambda: set(self._ok("sinfo", "-h", "-o", "%T").stdout.split()) == {"idle"}, timeout)
        return self

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (MinJobAge keeps finished ones): id, name, partition, state, comment."""
        out = self._ok("squeue", "--states=all", "--noheader", "--format=%i|%j|%P|%T|%k").stdout
        keys = ("id", "name", "partition", "state", "comment")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def logs(self) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if f.exists():
                parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop slurmd, slurmctld and munged by their PIDs."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            self._ok("scancel", "--user", getpass.getuser())
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._unlink_system_conf()

    def __enter__(self) -> SlurmCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    with SlurmCluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/omama-slurm")) as cluster:
        print(f"export SLURM_CONF={cluster.conf}   # Ctrl-C stops the cluster", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
