"""``host check`` for any host: a box's check, or a Slurm cluster's (one entry point).

The daemon (every ``check_every_s``) and ``helm host check`` both call ``probe_host``, so
the two can never report a host differently. A box's check carries its verdicts (each
problem with its fix, ``helm.remote.check.verdicts``) judged against the host's row.
"""

from __future__ import annotations

import time

from helm.models.tables import Host
from helm.remote.backend import Box, BoxError
from helm.remote.check import check_box, judge
from helm.remote.hosts import python_for
from helm.remote.slurm_conf import SlurmSettings


async def probe_host(box: Box, host: Host) -> dict:
    """The host's check; an unreachable host gives ``reachable: False`` and the error."""
    try:
        await box.ensure()
        workdir = await box.realpath(host.workdir)
        settings = SlurmSettings.from_json(host.slurm_json)
        if host.kind == "slurm" and settings is not None:
            from helm.remote.slurm_check import check_slurm

            return await check_slurm(
                box, settings, python=python_for(host), workdir=workdir, data_dir=host.data_dir
            )
        check = await check_box(
            box, python=python_for(host), workdir=workdir, data_dir=host.data_dir
        )
        return judge(check, host=host.name, declared_gpus=host.gpus)
    except BoxError as exc:
        return {"reachable": False, "error": str(exc), "checked_at": time.time()}
