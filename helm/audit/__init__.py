"""Auditing community pull requests before anyone builds on them.

Of the first three PRs the seed team's swarm reproduced, two were the baseline script with
a record claimed on top. An audit answers "is this real?" from evidence, in layers:

- ``fetch``: the PR's records folder, kept in ``<home>/audits/<owner>_<repo>_<N>/``;
- ``similarity``: how close its code is to every script helm knows (copies are caught);
- ``checks``: static checks (validator, claim vs logs, hyperparameters vs code, data hazards);
- ``reproduce``: our own rerun on the fleet, compared with the claim against the seed spread;
- ``verdict``: real, not_reproduced, copy, invalid or unverified, with the reason;
- ``store``: the Audit row, the feed post, listings and the pin gate.

``audit`` ties them together. docs/AUDIT.md has the rules.
"""
