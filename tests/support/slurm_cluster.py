"""A real one-machine Slurm cluster for tests: munged, slurmctld and slurmd on localhost.

    with slurm_cluster() as cluster:          # raises SlurmUnavailable where Slurm cannot be had
        subprocess.run(["srun", "-p", cluster.partition, "hostname"], env=cluster.env(), check=True)

An installed Slurm is used as it is. Where it is absent, it is installed from the distribution's
packages (Debian: slurmd, slurmctld, slurm-client, munge) only when asked, with
INVOLUTION_INSTALL_SLURM=1 (as `.ci/run` does): that needs root and apt-get, and a test run
changes the host only with that consent. The configuration lives in a temporary folder:
one node (this machine, NodeAddr=127.0.0.1, CPUs = nproc), one partition, no cgroups, no
accounting, free loopback ports, state and spool folders in the temporary folder. Every daemon
started here is stopped by its pid on the way out, also when the body raised.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .runs import free_port

INSTALL_VAR = "INVOLUTION_INSTALL_SLURM"  # 1: install Slurm and MUNGE with apt-get where absent
PACKAGES = ("slurmd", "slurmctld", "slurm-client", "munge")
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "srun", "sinfo", "scancel")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])


class SlurmUnavailable(RuntimeError):
    """Slurm is not installed and cannot be installed here; the message says why."""


def _missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name, path=SEARCH_PATH) is None]


def install_requested() -> bool:
    """Whether the caller allowed installing system packages (INVOLUTION_INSTALL_SLURM=1)."""
    return os.environ.get(INSTALL_VAR, "").strip().lower() in ("1", "true", "yes")


def ensure_installed(timeout: float = 900) -> None:
    """Install Slurm and MUNGE with apt-get where any of their programs is missing, if asked to."""
    missing = _missing_binaries()
    if not missing:
        return
    if not install_requested():
        raise SlurmUnavailable(f"{', '.join(missing)} not installed; install Slurm and MUNGE (Debian: apt-get install "
                               f"{' '.join(PACKAGES)}), or set {INSTALL_VAR}=1 to let the test install them with "
                               f"apt-get as root (.ci/run does)")
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and not running as root to install "
                               f"{' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and no apt-get to install them "
                               f"(install Slurm and MUNGE with the system's package manager)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    result = None
    for step in ([install], [["apt-get", "update", "-q"], install]):  # update only when the lists are stale
        for command in step:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
            if result.returncode != 0:
                break
        if result.returncode == 0:
            break
    if result is None or result.returncode != 0 or _missing_binaries():
        output = (result.stdout + result.stderr)[-1500:] if result is not None else ""
        raise SlurmUnavailable(f"`{' '.join(install)}` failed: {output.strip()}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class SlurmCluster:
    root: Path  # temporary folder holding the configuration, state, spool and logs
    partition: str
    node: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def log(self, daemon: str) -> Path:
        return self.root / "log" / f"{daemon}.log"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose srun/sinfo/scontrol talk to this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = SEARCH_PATH
        return env

    def logs(self) -> str:
        return "\n".join(f"--- {name} log:\n{_tail(self.log(name))}" for name in self.processes)


def _write_config(cluster: SlurmCluster, socket_path: Path, cpus: int) -> None:
    root, node = cluster.root, cluster.node
    (root / "state").mkdir()
    (root / "spool").mkdir()
    cluster.conf.write_text("\n".join([
        "ClusterName=localtest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={socket_path}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={cluster.log('slurmctld')}",
        f"SlurmdLogFile={cluster.log('slurmd')}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # no cgroups: plain process tracking, no task binding, no accounting
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",  # trust CPUs= below, whatever topology slurmd detects
        f"PlugStackConfig={root / 'plugstack.conf'}",
        f"NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} CPUs={cpus} State=UNKNOWN",
        f"PartitionName={cluster.partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
    (root / "plugstack.conf").write_text("")


def _start(cluster: SlurmCluster, name: str, command: list[str]) -> None:
    out = open(cluster.root / "log" / f"{name}.out", "wb")
    cluster.processes[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=cluster.env(),
                                               start_new_session=True)
    out.close()


def _check_alive(cluster: SlurmCluster) -> None:
    for name, process in cluster.processes.items():
        if process.poll() is not None:
            output = _tail(cluster.root / "log" / f"{name}.out")
            raise RuntimeError(f"{name} exited with code {process.returncode} while starting the test cluster:\n"
                               f"{output}\n{cluster.logs()}")


def _wait(cluster: SlurmCluster, what: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(cluster)
        if ready():
            return
        time.sleep(0.5)
    raise RuntimeError(f"the test cluster's {what} was not ready after {timeout:.0f} s\n{cluster.logs()}")


def _partition_state(cluster: SlurmCluster) -> str:
    result = subprocess.run(["sinfo", "-h", "-p", cluster.partition, "-o", "%t"], env=cluster.env(),
                            capture_output=True, text=True, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else ""


def _stop(cluster: SlurmCluster) -> None:
    """Cancel the cluster's jobs, then stop its daemons newest first: SIGTERM, then SIGKILL."""
    if cluster.processes.get("slurmctld") is not None and cluster.processes["slurmctld"].poll() is None:
        try:
            subprocess.run(["scancel", "-p", cluster.partition], env=cluster.env(), capture_output=True, timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                queue = subprocess.run(["squeue", "-h", "-p", cluster.partition], env=cluster.env(),
                                       capture_output=True, text=True, timeout=30)
                if queue.returncode != 0 or not queue.stdout.strip():
                    break
                time.sleep(0.5)
        except (OSError, subprocess.SubprocessError):
            pass
    for name in reversed(list(cluster.processes)):
        process = cluster.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


@contextmanager
def slurm_cluster(partition: str = "localtest", start_timeout: float = 120) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd on localhost; stop all three (by pid) on the way out."""
    ensure_installed()
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurmd must run as root to start jobs (SlurmUser=root)")
    node = socket.gethostname().split(".")[0]
    # short path: MUNGE's socket path must fit in a sockaddr_un
    cluster = SlurmCluster(Path(tempfile.mkdtemp(prefix="slurm-")), partition, node)
    munge_dir = cluster.root / "munge"
    socket_path = munge_dir / "munge.socket"
    try:
        (cluster.root / "log").mkdir()
        munge_dir.mkdir(mode=0o700)
        key = munge_dir / "munge.key"
        subprocess.run([shutil.which("mungekey", path=SEARCH_PATH), "--create", f"--keyfile={key}"],
                       check=True, capture_output=True, timeout=60)
        _write_config(cluster, socket_path, len(os.sched_getaffinity(0)))  # as nproc
        # --force: munged refuses to run as root, or next to a world-writable /tmp, without it
        _start(cluster, "munged", [shutil.which("munged", path=SEARCH_PATH), "--foreground", "--force",
                                   f"--socket={socket_path}", f"--key-file={key}",
                                   f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'seed'}",
                                   f"--log-file={cluster.log('munged')}"])
        _wait(cluster, "munged socket", socket_path.exists, start_timeout)
        _start(cluster, "slurmctld", [shutil.which("slurmctld", path=SEARCH_PATH), "-D", "-i",
                                      "-f", str(cluster.conf)])
        _start(cluster, "slurmd", [shutil.which("slurmd", path=SEARCH_PATH), "-D", "-N", node,
                                   "-f", str(cluster.conf)])
        _wait(cluster, f"partition {partition}", lambda: _partition_state(cluster) in ("idle", "mix"), start_timeout)
        yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(cluster.root, ignore_errors=True)
