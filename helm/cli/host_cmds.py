"""``helm host add|ls|set|check|rm|trust``: the boxes jobs run on.

Handlers import the remote package only when they run (asyncssh is slow to import).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from helm import fmt
from helm.cli.common import (
    HOST_GPUS,
    MAX_HOST_GPUS,
    CommandError,
    UsageError,
    add_leaf,
    bounded_int,
    parse_env,
    print_json,
    print_table,
    workspace,
)
from helm.cli.host_setup_cmd import print_verdicts
from helm.cli.host_setup_cmd import register as register_setup


def host_dict(host: Mapping[str, Any]) -> dict:
    """The JSON shape of a host row (environment values are stored already masked)."""
    target = None
    if host["ssh_host"]:
        user = f"{host['ssh_user']}@" if host["ssh_user"] else ""
        port = f":{host['ssh_port']}" if host["ssh_port"] and host["ssh_port"] != 22 else ""
        target = f"{user}{host['ssh_host']}{port}"
    reachable = host["reachable"]
    return {
        "name": host["name"],
        "kind": host["kind"],
        "target": target,
        "identity": host["identity"],
        "gpus": host["gpus"],
        "workdir": host["workdir"],
        "data_dir": host["data_dir"],
        "python": host["python"],
        "launcher": host["launcher"],
        "env": json.loads(host["env_json"] or "{}"),
        "enabled": bool(host["enabled"]),
        "reachable": None if reachable is None else bool(reachable),
        "checked_at": host["checked_at"],
        "check": json.loads(host["check_json"] or "{}"),
        "slurm": json.loads(host.get("slurm_json") or "{}") or None,
        "price_per_gpu_hour": host.get("price_per_gpu_hour"),
    }


def _slurm_settings(args: argparse.Namespace) -> Any:
    """The Slurm options of ``host add`` as settings (None without ``--slurm``)."""
    from helm.remote.slurm_conf import DEFAULT_MAX_SUBMITTED, SlurmSettings, parse_time

    given = [o for o in _SLURM_OPTIONS if getattr(args, o) not in (None, [])]
    if not args.slurm:
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} is for Slurm hosts (add --slurm)")
        return None
    if not args.partition:
        raise ValueError("a Slurm host needs --partition P")
    return SlurmSettings(
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        gpus_per_node=8 if args.gpus_per_node is None else args.gpus_per_node,
        max_nodes=args.max_nodes or 1,
        time_limit_s=parse_time(args.time) if args.time else None,
        sbatch_args=tuple(args.sbatch_arg or ()),
        max_submitted=args.max_submitted or DEFAULT_MAX_SUBMITTED,
    )


_SLURM_OPTIONS = (
    "partition",
    "account",
    "qos",
    "gpus_per_node",
    "max_nodes",
    "time",
    "sbatch_arg",
    "max_submitted",
)


def _add(args: argparse.Namespace) -> None:
    from helm.remote.hosts import add_host

    env = parse_env(args.env)
    ws = workspace(args)
    try:
        slurm = _slurm_settings(args)
        with ws.store.write() as s:
            host = add_host(
                ws,
                s,
                args.name,
                ssh=args.ssh,
                local=args.local,
                slurm=slurm,
                identity=args.identity,
                gpus=args.gpus,
                workdir=args.workdir,
                data=args.data,
                python=args.python,
                launcher=args.launcher,
                env=env,
                price=args.price,
            )
            out = host_dict(host.model_dump())
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print_json(out)
    elif slurm is not None:
        where = f"login node {out['target']}" if out["target"] else "Slurm commands here"
        nodes = f"up to {slurm.max_nodes} x {slurm.gpus_per_node} GPUs per job"
        print(f"added Slurm host {args.name} ({where}; partition {slurm.partition}, {nodes})")
        trust = f"  (helm host trust {args.name} if its key is new)" if out["target"] else ""
        print(f"next: helm host check {args.name}{trust}")
    else:
        where = out["target"] or "this machine"
        print(f"added host {args.name} ({where}, {out['gpus']} GPUs)")
        if out["kind"] == "ssh":
            print(
                f"next: helm host check {args.name}  (helm host trust {args.name} if its key is new)"
            )


def _gpu_summary(check: dict) -> str:
    slurm = check.get("slurm")
    if isinstance(slurm, dict):  # a cluster: its partition's nodes, as sinfo reported them
        nodes = slurm.get("partition_nodes")
        per = slurm.get("max_gpus_per_node")
        return f"{nodes} nodes x {per} GPUs" if nodes is not None and per is not None else "-"
    gpus = check.get("gpus")
    if not gpus:
        return "cpu" if check.get("reachable") else "-"
    return f"{len(gpus)}x {gpus[0].get('name')}"


def _ls(args: argparse.Namespace) -> None:
    from helm.models.hosts import list_hosts

    with workspace(args).db(write=False) as db:
        hosts = [host_dict(h) for h in list_hosts(db)]
    if args.json:
        print_json(hosts)
        return
    print_table(
        [
            "NAME",
            "KIND",
            "TARGET",
            "GPUS",
            "$/GPU-H",
            "DETECTED",
            "REACHABLE",
            "CHECKED",
            "PROBLEMS",
        ],
        [
            (
                h["name"],
                h["kind"],
                h["target"] or ("this machine" if h["kind"] == "slurm" else "local"),
                h["gpus"],
                fmt_price(h["price_per_gpu_hour"]),
                _gpu_summary(h["check"]),
                {True: "yes", False: "no", None: "?"}[h["reachable"]]
                + ("" if h["enabled"] else " (disabled)"),
                fmt.since(h["checked_at"]),
                "; ".join(h["check"].get("problems", [])) or h["check"].get("error") or "-",
            )
            for h in hosts
        ],
    )


def fmt_price(price: float | None) -> str:
    """A price per GPU-hour for a table ("-": unknown, so money on that host is unknown)."""
    return "-" if price is None else f"{price:.2f}"


def parse_price(text: str) -> float | None:
    """``--price``'s value: USD per GPU-hour, or ``none`` / ``-`` for "unknown"."""
    if text.strip().lower() in ("none", "-", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a price: {text!r} (USD per GPU-hour, or none)"
        ) from None


def _set(args: argparse.Namespace) -> None:
    """Edit a host in place; for now its price (the jobs it ran keep what they cost)."""
    from helm.models.hosts import get_host
    from helm.remote.hosts import set_price

    ws = workspace(args)
    try:
        with ws.db(write=True) as db:
            set_price(db, args.name, args.price)
            out = host_dict(get_host(db, args.name))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print_json(out)
    else:
        print(f"host {args.name}: {fmt_price(args.price)} USD per GPU-hour")


def _check(args: argparse.Namespace) -> int:
    import asyncio

    from helm.models.job_life import load_host, save_check
    from helm.remote.hosts import make_box
    from helm.remote.probe import probe_host

    ws = workspace(args)
    with ws.store.read() as s:
        host = load_host(s, args.name)

    async def go() -> dict:
        box = make_box(ws, host)
        try:
            return await probe_host(box, host)
        finally:
            await box.close()

    check = asyncio.run(go())
    save_check(ws.store, host.name, check["reachable"], check)
    if host.kind == "slurm" and not args.json and check["reachable"]:
        from helm.remote.slurm_check import render_lines

        print(f"{host.name}: reachable (Slurm)")
        for line in render_lines(check):
            print(f"  {line}")
        for p in check.get("problems", []):
            print(f"  problem: {p}")
    elif args.json:
        print_json(check)
    elif check["reachable"]:
        data = check.get("data")
        print(f"{host.name}: reachable")
        print(f"  gpus:   {_gpu_summary(check)}")
        for g in check.get("gpus", []):
            print(
                f"    [{g['index']}] {g['name']}  mem {g['memory_used_mib']}/"
                f"{g['memory_total_mib']} MiB  util {g['utilization_pct']}%  "
                f"{g['temperature_c']}C"
            )
        print(
            f"  python: {check.get('python')}  torch: {check.get('torch')}  cuda: {check.get('cuda')}"
        )
        print(f"  disk:   {_disk_line(check)}")
        if data is not None:
            print(
                f"  data:   {data['train_shards']} train / {data['val_shards']} val shards, "
                f"tokenizer {'present' if data['tokenizer'] else 'MISSING'}"
            )
        print_verdicts(check)
    if not check["reachable"]:
        raise CommandError(check["error"])
    return 1 if check.get("problems") else 0


def _disk_line(check: dict) -> str:
    """Free space under the work folder, marked when it is a problem (see helm.remote.check)."""
    from helm.remote.check import MIN_FREE_GB

    free, where = check.get("disk_free_gb"), check.get("disk_dir") or "the work folder"
    if free is None:
        return f"free space UNKNOWN in {where}"
    line = f"{free:.1f} GB free in {where}"
    if free < MIN_FREE_GB:
        line += f"  LOW (helm wants at least {MIN_FREE_GB:g} GB)"
    if check.get("write_error"):
        line += f"  NOT WRITABLE: {check['write_error']}"
    return line


def _rm(args: argparse.Namespace) -> None:
    from helm.remote.hosts import remove_host

    ws = workspace(args)
    try:
        with ws.db(write=True) as db:
            remove_host(ws, db, args.name)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    print(f"removed host {args.name}")


def _set_enabled(args: argparse.Namespace) -> None:
    from helm.models.hosts import set_host_enabled

    enabled = args.host_cmd == "enable"
    with workspace(args).db(write=True) as db:
        set_host_enabled(db, args.name, enabled)
    if enabled:
        print(f"host {args.name} enabled: new jobs may be placed on it")
    else:
        print(f"host {args.name} disabled: no new jobs; running ones finish and are watched")


def _trust(args: argparse.Namespace) -> None:
    """Trust the key a host presents now, replacing the one trusted before (docs/REMOTE.md).

    A new host's key is taken with ``--yes`` (first contact) or a ``y`` at the terminal. A
    *changed* key may be a man in the middle, so a bare ``--yes`` never takes it: only its
    fingerprint (``--fingerprint``, read off the box by other means) or the host's name
    typed at a terminal after the old and new fingerprints were shown.
    """
    import asyncio

    from helm.models.hosts import get_host
    from helm.remote import hostkeys

    ws = workspace(args)
    with ws.db(write=False) as db:
        host = get_host(db, args.name)
    name = host["name"]
    if host["kind"] != "ssh":
        raise CommandError(f"host {name} is local: there is no host key to trust")
    target = hostkeys.resolve(host["ssh_host"] or name, host["ssh_port"])
    known = hostkeys.trusted_keys(ws.known_hosts_path, target)
    try:
        key = asyncio.run(hostkeys.fetch_key(target, known))
    except Exception as exc:
        raise CommandError(
            f"cannot read the host key of {target.host}:{target.port}: {exc}"
        ) from exc
    fp = hostkeys.fingerprint(key)
    if any(k.public_data == key.public_data for k in known):
        print(f"{name}: key {fp} is already trusted")
        return
    if args.fingerprint is not None and not hostkeys.fingerprint_matches(key, args.fingerprint):
        raise CommandError(
            f"{name} ({target.host}:{target.port}) presents {fp}, not {args.fingerprint}: "
            "nothing trusted"
        )
    if known:
        print(hostkeys.changed_banner(name, target, key, known), file=sys.stderr)
        if args.fingerprint is None:
            _confirm_changed(name, args.yes)
    else:
        print(f"{name} ({target.host}:{target.port}) presents {fp}")
        if args.fingerprint is None and not args.yes:
            if not sys.stdin.isatty():
                raise CommandError("not a terminal: pass --yes to trust this key without asking")
            if input("trust this key? [y/N] ").strip().lower() not in ("y", "yes"):
                raise CommandError("not trusted")
    hostkeys.record_trust(ws.known_hosts_path, target, key)
    was = " (it replaces the key trusted before)" if known else ""
    print(f"trusted {fp}{was}; recorded in {ws.known_hosts_path}")


def _confirm_changed(name: str, yes: bool) -> None:
    """A changed key needs more than a habit's "y": the host's name, typed at a terminal."""
    if yes or not sys.stdin.isatty():
        raise CommandError(
            f"the host key of {name} CHANGED (fingerprints above); --yes only trusts a new "
            f"host's first key. If the box's own fingerprint matches the presented one, run "
            f"`helm host trust {name} --fingerprint SHA256:...` with the fingerprint the box "
            "shows, or `helm host trust` at a terminal"
        )
    answer = input(f"type the host's name ({name}) to replace the trusted key: ").strip()
    if answer != name:
        raise CommandError("not trusted; the old key stays")


_PRICE_HELP = "what one GPU-hour there costs, in USD (none: unknown; money shows '-')"


def register(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser("host", help="the boxes jobs run on (SSH or this machine)")
    hs = h.add_subparsers(
        dest="host_cmd", required=True, metavar="{add,ls,set,check,setup,disable,enable,rm,trust}"
    )
    p = add_leaf(hs, "add", _add, "register a box", listing=True)
    p.add_argument("name")
    p.add_argument(
        "--ssh", metavar="USER@HOST[:PORT]", help="reach it over SSH (a Slurm host's login node)"
    )
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--local", action="store_true", help="this machine (GPUs = job slots)")
    kind.add_argument(
        "--slurm",
        action="store_true",
        help="a Slurm cluster: helm submits with sbatch (over --ssh, else from here)",
    )
    p.add_argument("--identity", metavar="KEY", help="SSH private key (default: ssh's own)")
    p.add_argument(
        "--gpus",
        type=HOST_GPUS,
        help=f"GPUs to schedule on it, 1..{MAX_HOST_GPUS} (default 8; local: job slots, 1)",
    )
    p.add_argument(
        "--workdir", help="where jobs live on the box (default ~/helm-jobs/<campaign id>)"
    )
    p.add_argument("--data", metavar="DIR", help="dataset root on the box (sets DATA_PATH ...)")
    p.add_argument("--python", metavar="PATH", help="interpreter on the box (default python3)")
    p.add_argument(
        "--launcher",
        metavar="TEMPLATE",
        help='multi-process launcher, e.g. "torchrun --standalone --nproc_per_node={nproc}"',
    )
    p.add_argument("--env", action="append", metavar="K=V", help="environment for every job")
    p.add_argument("--price", type=parse_price, metavar="USD_PER_GPU_HOUR", help=_PRICE_HELP)
    slurm = p.add_argument_group("Slurm hosts (with --slurm)")
    slurm.add_argument("--partition", metavar="P", help="partition to submit to (required)")
    slurm.add_argument("--account", metavar="A", help="account to charge (sbatch --account)")
    slurm.add_argument("--qos", metavar="Q", help="quality of service (sbatch --qos)")
    slurm.add_argument(
        "--gpus-per-node",
        type=bounded_int(0, 64, "--gpus-per-node"),
        metavar="N",
        help="GPUs on each node (default 8; 0: a CPU partition)",
    )
    slurm.add_argument(
        "--max-nodes",
        type=bounded_int(1, 64, "--max-nodes"),
        metavar="N",
        help="nodes one job may span (default 1; 16 GPUs = 2 nodes x 8)",
    )
    slurm.add_argument(
        "--time", metavar="HH:MM:SS", help="sbatch --time (default: the job's limit + 5 min)"
    )
    slurm.add_argument(
        "--sbatch-arg",
        action="append",
        metavar="ARG",
        help="one more sbatch option, e.g. --sbatch-arg=--constraint=h100 (repeatable)",
    )
    slurm.add_argument(
        "--max-submitted",
        type=bounded_int(1, 1000, "--max-submitted"),
        metavar="N",
        help="jobs helm keeps submitted to Slurm at once (default 4); the rest wait in helm",
    )
    add_leaf(hs, "ls", _ls, "list hosts with their last check", listing=True)
    p = add_leaf(hs, "set", _set, "edit a host: its price per GPU-hour", listing=True)
    p.add_argument("name")
    p.add_argument(
        "--price", type=parse_price, required=True, metavar="USD_PER_GPU_HOUR", help=_PRICE_HELP
    )
    p = add_leaf(hs, "check", _check, "probe a host: GPUs, python, torch, data, disk", listing=True)
    p.add_argument("name")
    register_setup(hs)
    p = add_leaf(hs, "disable", _set_enabled, "place no new jobs on a host (drain it)")
    p.add_argument("name")
    p = add_leaf(hs, "enable", _set_enabled, "let the scheduler use a host again")
    p.add_argument("name")
    p = add_leaf(hs, "rm", _rm, "forget a host (not while it runs jobs)")
    p.add_argument("name")
    p = add_leaf(hs, "trust", _trust, "show a host's key fingerprint and trust it")
    p.add_argument("name")
    p.add_argument(
        "--yes",
        action="store_true",
        help="trust a new host's key without asking (never a changed one)",
    )
    p.add_argument(
        "--fingerprint",
        metavar="SHA256:...",
        help="trust the presented key only if it has this fingerprint (also a changed key)",
    )
