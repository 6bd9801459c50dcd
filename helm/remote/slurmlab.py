"""A throwaway one-node Slurm cluster on this machine, for tests, benches and trying helm out.

The Slurm backend is only believable against a real controller: real ``sbatch`` parsing,
real scheduling by GRES counts, real requeues, node failures and cancels. This starts
Debian's ``munged``, ``slurmctld`` and ``slurmd`` (package ``slurm-wlm``) as root from a
``slurm.conf`` written into a private folder, on free unprivileged ports, with settings that
work inside a container (``proctrack/linuxproc``, ``task/none``, ``select/cons_tres``). GPUs
are declared as GRES over placeholder files, so ``--gres=gpu:N`` is scheduled and enforced by
count; nothing else about them is real. ``stop()`` ends each daemon by the pid it recorded.

Every Slurm command helm runs against it needs ``SLURM_CONF`` (``env()`` gives it), exactly
as a login node's commands find ``/etc/slurm/slurm.conf``.

``accounting=True`` adds what a real site has and the plain lab lacks: ``sacct`` history, and
associations and QOS limits enforced at submit. It starts a private MariaDB (``mariadbd`` as
root on a unix socket only, data in ``<root>/db``; packages ``mariadb-server``) and
``slurmdbd`` (package ``slurmdbd``) on a free port, then registers cluster ``helmlab``,
account ``helm`` (the submitting user's default) and QOS ``small`` (``MaxTRESPerJob=
gres/gpu=1``, ``Flags=DenyOnLimit``). Jobs are gathered with ``jobacct_gather/linux``
(TotalCPU is recorded; MaxRSS stays empty for jobs shorter than the 30 s poll). Observed on
Debian's 22.05: ``sbatch --qos=small --gres=gpu:2`` exits 1 with "sbatch: error:
QOSMaxGRESPerJob" and "sbatch: error: Batch job submission failed: Job violates
accounting/QOS policy (job submit limit, user's size and/or time limits)" (without
DenyOnLimit the job is accepted and pends with reason QOSMaxGRESPerJob instead);
``--account=nope`` is refused with "Invalid account or account/partition combination
specified", ``--qos=nope`` with "Invalid qos specification"; ``sacct -X -n -P -j ID -o
JobIDRaw,State,ExitCode`` prints ``ID|COMPLETED|0:0`` or ``ID|FAILED|3:0`` (``exit 3``)
within about a second of the job's end (it may print ``ID|PENDING|0:0`` or nothing before).

Startup on this 2-core machine: 0.34 s plain; 5.0 s with accounting (0.7 s
``mariadb-install-db``, ~0.5 s per ``sacctmgr`` commit, 1 s for slurmctld to register).
``stop()``: 0.15 s plain, 0.7 s with accounting.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MUNGED = "/usr/sbin/munged"
SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
SLURMDBD = "/usr/sbin/slurmdbd"
MARIADBD = "/usr/sbin/mariadbd"
CLUSTER = "helmlab"
ACCOUNT = "helm"
PARTITION = "gpu"


def slurm_available() -> str | None:
    """None when a cluster can be started here, else why not (for a clear test failure)."""
    missing = [p for p in (MUNGED, SLURMCTLD, SLURMD) if not Path(p).is_file()]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install slurm-wlm munge"
    if shutil.which("sbatch") is None:
        return "sbatch not on PATH: apt-get install slurm-client"
    if os.geteuid() != 0:
        return "a test Slurm cluster runs its daemons as root"
    return None


def accounting_available() -> str | None:
    """None when a cluster with accounting can be started here, else why not."""
    why = slurm_available()
    if why is not None:
        return why
    missing = [p for p in (SLURMDBD, MARIADBD) if not Path(p).is_file()]
    for tool in ("mariadb-install-db", "mariadb", "sacctmgr"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if missing:
        return f"missing {', '.join(missing)}: apt-get install slurmdbd mariadb-server"
    return None


def _submitter() -> str:
    return getpass.getuser()


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class LocalSlurm:
    """A running one-node cluster: node ``node`` with ``cpus`` CPUs and ``gpus`` GRES GPUs in
    partition ``gpu``; with slurmdbd and MariaDB when ``accounting``."""

    root: Path
    node: str
    cpus: int
    gpus: int
    ports: tuple[int, ...]
    accounting: bool = False
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        """What a Slurm command needs to reach this cluster (add it to helm's host env)."""
        return {"SLURM_CONF": str(self.conf)}

    @classmethod
    def start(
        cls,
        root: Path,
        *,
        cpus: int | None = None,
        gpus: int = 2,
        extra_partitions: tuple[str, ...] = (),
        accounting: bool = False,
        timeout_s: float = 30.0,
    ) -> LocalSlurm:
        """Write the configuration, start munged, slurmctld and slurmd, and wait until the
        node takes jobs. ``extra_partitions``: more ``PartitionName=...`` lines (each gets
        ``Nodes=<node>``), e.g. a partition whose limits forbid a request. ``accounting``:
        also a private MariaDB and slurmdbd, so ``sacct`` answers and associations and QOS
        limits are enforced (see the module docstring)."""
        root = Path(root)
        for sub in ("munge", "state", "spool", "log", "dev"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "munge", 0o700)
        node = socket.gethostname().split(".")[0]
        # More CPUs than GPUs (declared, whatever the machine has: config_overrides below),
        # so a job that waits for a GPU waits on GRES, not on CPUs.
        cpus = cpus or max(2 * gpus, 4, os.cpu_count() or 2)
        lab = cls(root, node, cpus, gpus, tuple(_free_ports(3 if accounting else 2)), accounting)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        for i in range(gpus):
            (root / "dev" / f"gpu{i}").touch()
        lab._write_conf(extra_partitions)
        try:
            lab._spawn("munged", [MUNGED, "-f", "-F", *lab._munge_args()])
            lab._wait_for(lambda: (root / "munge" / "munge.sock").exists(), "munged", timeout_s)
            if accounting:
                lab._start_accounting(timeout_s)
            lab._spawn("slurmctld", [SLURMCTLD, "-D", "-c", "-f", str(lab.conf)])
            lab._wait_for(lab._controller_up, "slurmctld", timeout_s)
            if accounting:
                lab._add_qos()
                lab._wait_for(lab._limits_known, "slurmctld", timeout_s)
            lab._spawn("slurmd", [SLURMD, "-D", "-f", str(lab.conf), "-N", node])
            lab._wait_for(lab._node_idle, "slurmd", timeout_s)
        except BaseException:
            lab.stop()
            raise
        return lab

    def _munge_args(self) -> list[str]:
        m = self.root / "munge"
        return [
            f"--key-file={m / 'munge.key'}",
            f"--socket={m / 'munge.sock'}",
            f"--pid-file={m / 'munged.pid'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={m / 'munged.seed'}",
        ]

    def _write_conf(self, extra_partitions: tuple[str, ...]) -> None:
        r = self.root
        ctld, slurmd = self.ports[:2]
        lines = [
            "ClusterName=helmlab",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={ctld}",
            f"SlurmdPort={slurmd}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={r / 'munge' / 'munge.sock'}",
            "CredType=cred/munge",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "GresTypes=gpu",
            # A node the test sets DOWN stays DOWN until resume_node (with 2, the controller
            # returned it to service by itself at its next ping, racing the tests); a node
            # DOWN for not responding still comes back when its slurmd registers again.
            "ReturnToService=1",
            # Trust the CPU count above rather than the hardware (CI has 2 cores), instead of
            # marking the node INVAL for having fewer than configured.
            "SlurmdParameters=config_overrides",
            "MpiDefault=none",
            "SwitchType=switch/none",
            *self._accounting_conf(),
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "InactiveLimit=0",
            "KillWait=3",
            "MinJobAge=600",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "MessageTimeout=20",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=4000"
            f" Gres=gpu:{self.gpus} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            *(f"PartitionName={p} Nodes={self.node}" for p in extra_partitions),
            "",
        ]
        self.conf.write_text("\n".join(lines))
        last = self.gpus - 1
        gres = f"gpu[0-{last}]" if self.gpus > 1 else "gpu0"
        (r / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File={r / 'dev' / gres}\n")

    def _accounting_conf(self) -> list[str]:
        if not self.accounting:
            return [
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
            ]
        return [
            "JobAcctGatherType=jobacct_gather/linux",
            "JobAcctGatherFrequency=30",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={self.ports[2]}",
            # The munge socket for talking to slurmdbd: AuthInfo covers only the cluster's own
            # daemons, and without this the commands look for /run/munge/munge.socket.2.
            f"AccountingStoragePass={self.root / 'munge' / 'munge.sock'}",
            # gres/gpu must be a tracked TRES, or a QOS limit on it is never checked.
            "AccountingStorageTRES=gres/gpu",
            "AccountingStorageEnforce=associations,limits,qos",
        ]

    # -- accounting: a private MariaDB on a unix socket, and slurmdbd over it --------------

    @property
    def _db_socket(self) -> Path:
        return self.root / "db" / "mysqld.sock"

    def _db_env(self) -> dict[str, str]:
        # Slurm's MySQL plugin connects to "localhost" without naming a socket; the client
        # library then takes MYSQL_UNIX_PORT, so nothing global (/run/mysqld) is involved.
        return {"MYSQL_UNIX_PORT": str(self._db_socket)}

    def _mariadb_args(self) -> list[str]:
        d = self.root / "db"
        return [
            "--no-defaults",
            f"--datadir={d / 'data'}",
            "--user=root",
            "--skip-name-resolve",
            "--innodb-log-file-size=4M",
            "--innodb-buffer-pool-size=32M",
            "--innodb-data-file-path=ibdata1:4M:autoextend",
        ]

    def _start_accounting(self, timeout_s: float) -> None:
        d = self.root / "db"
        (d / "data").mkdir(parents=True, exist_ok=True)
        init = subprocess.run(
            ["mariadb-install-db", *self._mariadb_args(), "--skip-test-db"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if init.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {(init.stdout + init.stderr)[-800:]}")
        self._spawn(
            "mariadbd",
            [
                MARIADBD,
                *self._mariadb_args(),
                "--skip-networking",
                f"--socket={self._db_socket}",
                f"--pid-file={d / 'mysqld.pid'}",
                f"--log-error={self.root / 'log' / 'mariadbd.log'}",
            ],
        )
        self._wait_for(self._db_up, "mariadbd", timeout_s)
        password = os.urandom(12).hex()
        self._sql(
            "CREATE DATABASE IF NOT EXISTS slurm_acct_db;"
            f" CREATE USER 'slurm'@'localhost' IDENTIFIED BY '{password}';"
            " GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
        )
        self._write_dbd_conf(password)
        self._spawn("slurmdbd", [SLURMDBD, "-D"], extra_env=self._db_env())
        self._wait_for(self._dbd_up, "slurmdbd", timeout_s)
        # Before slurmctld starts, so it registers into an existing cluster with an account
        # for the user who submits (root, in tests and over the loopback sshd).
        for argv in (
            ("add", "cluster", CLUSTER),
            ("add", "account", ACCOUNT, f"Cluster={CLUSTER}", "Description=helm tests"),
            ("add", "user", _submitter(), f"Account={ACCOUNT}", f"Cluster={CLUSTER}"),
        ):
            self._sacctmgr(*argv)

    def _add_qos(self) -> None:
        """QOS ``small`` (at most one GPU a job), once slurmctld has registered: the TRES
        ``gres/gpu`` exists in the database only from then on."""
        user = _submitter()
        self._sacctmgr("add", "qos", "small", "MaxTRESPerJob=gres/gpu=1", "Flags=DenyOnLimit")
        self._sacctmgr(
            "modify",
            "user",
            user,
            "set",
            "QOS=normal,small",
            "DefaultQOS=normal",
            f"DefaultAccount={ACCOUNT}",
        )

    def _limits_known(self) -> bool:
        """slurmctld has received the QOS and the user's default association from slurmdbd
        (pushed after each sacctmgr commit), so a first submission already meets them."""
        qos = self.command("scontrol", "show", "assoc_mgr", "flags=qos", "qos=small", check=False)
        assoc = self.command(
            "scontrol",
            "-o",
            "show",
            "assoc_mgr",
            "flags=assoc",
            f"users={_submitter()}",
            check=False,
        )
        return "MaxTRESPJ=gres/gpu=1" in qos.stdout and any(
            f"Account={ACCOUNT} " in line and "DefAssoc=Yes" in line
            for line in assoc.stdout.splitlines()
        )

    def _sacctmgr(self, *argv: str) -> None:
        r = self.command("sacctmgr", "-i", *argv, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"sacctmgr {' '.join(argv)}: {(r.stdout + r.stderr).strip()}")

    def _sql(self, sql: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self._db_socket}", "-u", "root", "-e", sql],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )

    def _db_up(self) -> bool:
        if not self._db_socket.exists():
            return False
        try:
            self._sql("SELECT 1")
        except subprocess.CalledProcessError:
            return False
        return True

    def _dbd_up(self) -> bool:
        return self.command("sacctmgr", "-n", "-P", "list", "cluster", check=False).returncode == 0

    def _write_dbd_conf(self, password: str) -> None:
        r = self.root
        path = r / "slurmdbd.conf"  # slurmdbd finds it beside $SLURM_CONF
        path.touch(mode=0o600)
        os.chmod(path, 0o600)  # slurmdbd refuses a readable one (it holds the password)
        lines = [
            "AuthType=auth/munge",
            f"AuthInfo=socket={r / 'munge' / 'munge.sock'}",
            "DbdHost=localhost",
            "DbdAddr=127.0.0.1",
            f"DbdPort={self.ports[2]}",
            "SlurmUser=root",
            f"PidFile={r / 'slurmdbd.pid'}",
            f"LogFile={r / 'log' / 'slurmdbd.log'}",
            "StorageType=accounting_storage/mysql",
            "StorageHost=localhost",
            "StorageUser=slurm",
            f"StoragePass={password}",
            "StorageLoc=slurm_acct_db",
            "",
        ]
        path.write_text("\n".join(lines))

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115  (owned by the child)
        env = {**os.environ, **self.env(), **(extra_env or {})}
        self.procs[name] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
        log.close()

    def _wait_for(self, ready, what: str, timeout_s: float) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}: {self._tail(name)}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} not ready after {timeout_s:g}s: {self._tail(what)}")

    def _tail(self, name: str) -> str:
        text = ""
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if path.exists():
                text += path.read_text(errors="replace")[-800:]
        return text

    def command(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm command against this cluster (``scontrol``, ``squeue`` ...), from the
        lab's folder: a job submitted without ``--output`` writes its ``slurm-N.out`` there,
        not into whatever folder the caller runs in."""
        return subprocess.run(
            list(argv),
            cwd=self.root,
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def _controller_up(self) -> bool:
        return self.command("scontrol", "ping", check=False).stdout.count("UP") > 0

    def _node_idle(self) -> bool:
        out = self.command("sinfo", "-h", "-N", "-o", "%t", check=False).stdout.split()
        return bool(out) and all(s in ("idle", "mix", "alloc") for s in out)

    def node_state(self) -> str:
        return self.command("sinfo", "-h", "-N", "-o", "%T").stdout.strip()

    def down_node(self, reason: str = "helm test") -> None:
        """Mark the node DOWN: Slurm kills its jobs (NODE_FAIL) as if the machine had died."""
        self.command(
            "scontrol", "update", f"NodeName={self.node}", "State=DOWN", f"Reason={reason}"
        )

    def resume_node(self, timeout_s: float = 30.0) -> None:
        """Return the node to service, and wait until it takes jobs.

        A node that went DOWN for not responding comes back by itself once its slurmd
        registers again, so it may be back in service before this is called; Slurm then
        refuses ``State=RESUME`` ("Invalid node state specified"). That refusal is only an
        error while the node is still out of service.
        """
        r = self.command("scontrol", "update", f"NodeName={self.node}", "State=RESUME", check=False)
        if r.returncode != 0 and not self._node_idle():
            raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr)
        self._wait_for(self._node_idle, "slurmd", timeout_s)

    def stop(self) -> None:
        """Cancel the cluster's jobs, then end the daemons it started (by pid), slurmd first."""
        if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
            try:
                self.command("scancel", "--full", "--state=RUNNING", check=False)
                self.command("scancel", "--state=PENDING", check=False)
                deadline = time.monotonic() + 10
                while (
                    time.monotonic() < deadline
                    and self.command("squeue", "-h", "-t", "R,CG", check=False).stdout.strip()
                ):
                    time.sleep(0.2)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
