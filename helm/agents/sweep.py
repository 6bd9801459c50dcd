"""The built-in sweep agent: no language model, just the experiment loop over env knobs.

Each step: move onto a newly pinned base, read directives (the grammar of
``helm.agents.directives``), pick the next change, and run it through the same protocol as
every other driver. The order of business: a value fixed by a ``set`` directive (run as a new
reference), the reference run of a fresh base, one re-seeded repeat to measure noise (only
until the workspace has a measurement), values queued by ``sweep`` directives, then local and
random search around the branch's best. Single-knob results become insights with effect
sizes. Its memory (fixed values, focus, queue, effects) lives in ``agents/<name>/sweep.json``
so a restarted agent resumes where it stopped.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from helm.agents import budget as bud
from helm.agents import config as cfg
from helm.agents import taskrepo as tr
from helm.agents.directives import GrammarError, deliver, parse_directive
from helm.agents.experiment import Backend, ExpRequest, move_onto_base, run_experiment
from helm.agents.keeprule import seed_spread
from helm.agents.knobs import Knob, discover
from helm.agents.report import ExpResult, signed
from helm.agents.screen import screen_env
from helm.agents.search import Proposal, candidate_keys, propose
from helm.models.agents import get_agent, update_agent
from helm.models.directives import ack_directive
from helm.models.feed import post_feed
from helm.models.runs import canonical_env, find_duplicate, reference_run, seed_scores
from helm.models.states import RunStatus
from helm.workspace import Workspace


@dataclass
class SweepState:
    fixed: dict[str, str] = field(default_factory=dict)
    fixed_by: dict[str, int] = field(default_factory=dict)
    focus: list[str] = field(default_factory=list)
    queue: list[list[Any]] = field(default_factory=list)  # [key, value, directive_id]
    noise_done: bool = False
    effects: dict[str, list[float]] = field(default_factory=dict)
    sweeps: dict[str, dict[str, float | None]] = field(default_factory=dict)
    exhausted_at: float | None = None
    crashed: list[str] = field(default_factory=list)  # "KEY=value" a local move crashed with
    held: dict[str, Any] | None = None  # a proposal refused at the budget: the next run


class SweepAgent:
    def __init__(
        self,
        ws: Workspace,
        agent: str,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        backend: Backend | None = None,
        poll_s: float = 1.0,
        seed: int | None = None,
        budget_wait_s: float = 60.0,
    ) -> None:
        self.ws, self.agent = ws, agent
        self.should_stop = should_stop
        self.backend = backend
        self.poll_s = poll_s
        self.rng = random.Random(seed if seed is not None else hash(agent) & 0xFFFF)
        self.path = ws.agents_dir / agent / "sweep.json"
        self.state = self._load()
        self.stopped_by_directive = False
        self.budget_wait_s = budget_wait_s
        self._budget_line: str | None = None  # the refusal being waited out (logged once)

    # State ------------------------------------------------------------------------------------
    def _load(self) -> SweepState:
        try:
            return SweepState(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return SweepState()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state.__dict__, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def _post(self, text: str, kind: str = "insight", run_id: int | None = None) -> None:
        with self.ws.db(write=True) as db:
            post_feed(db, text, agent=self.agent, kind=kind, run_id=run_id)

    # Loop ---------------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> None:
        steps, failures = 0, 0
        while not self.should_stop() and (max_steps is None or steps < max_steps):
            try:
                self.step()
                failures = 0
            except bud.BudgetReached as exc:  # not a failure: wait until the budget allows
                self._wait_for_budget(exc)
            except Exception as exc:  # one bad step must not end the agent
                import traceback

                traceback.print_exc()
                failures += 1
                if failures == 1:
                    self._post(f"sweep step failed: {exc}"[:300], kind="system")
                self._idle(min(60.0, 2.0 * 2**failures))
            steps += 1
            if self.stopped_by_directive:
                return

    def _wait_for_budget(self, exc: bud.BudgetReached) -> None:
        """At the budget no new job is queued (``helm.agents.budget``): say so once in the
        log and on the agent's row (the feed has the crossing already), then recheck every
        ``budget_wait_s``. Directives are still read on each recheck, so ``stop`` works."""
        line = str(exc)
        if line != self._budget_line:
            print(f"sweep {self.agent}: {line}; waiting", file=sys.stderr, flush=True)
            self._budget_line = line
        with self.ws.db(write=True) as db:
            update_agent(db, self.agent, state="waiting", note=line[:200])
        self._idle(self.budget_wait_s)

    def step(self) -> ExpResult | None:
        """One directive check and (usually) one experiment."""
        move_onto_base(self.ws, self.agent)
        wt = tr.ensure_worktree(self.ws, self.agent)
        with self.ws.db(write=True) as db:
            update_agent(db, self.agent, state="thinking", last_seen_at=time.time())
        self._obey(deliver(self.ws, self.agent, wt, "sweep"))
        if self.stopped_by_directive:
            return None
        bud.check_queue(self.ws, self.agent)  # BudgetReached before a proposal is used up
        if self._budget_line is not None:
            print(f"sweep {self.agent}: budget allows runs again; resuming", file=sys.stderr)
            self._budget_line = None
            with self.ws.db(write=True) as db:
                update_agent(db, self.agent, note=None)
        proposal = self._take_held() or self.next_proposal()
        if proposal is None:
            if self.state.exhausted_at is None:
                self.state.exhausted_at = time.time()
                self._save()
                self._post(
                    "sweep: every neighbour of my best has been run; waiting for a "
                    "directive or a new base",
                    kind="system",
                )
            self._idle(10.0)
            return None
        try:
            res = run_experiment(
                self.ws,
                ExpRequest(
                    self.agent,
                    proposal.description,
                    env=proposal.changes,
                    baseline=proposal.baseline,
                    seed=proposal.seed,
                ),
                backend=self.backend,
                poll_s=self.poll_s,
                should_stop=self.should_stop,
            )
        except bud.BudgetReached:  # reached since the check above: keep it for later
            self.state.held = asdict(proposal)  # in sweep.json: a restart runs it next too
            self._save()
            raise
        self.learn(proposal, res)
        return res

    def _take_held(self) -> Proposal | None:
        """The proposal a budget refused (a queued value is popped from the queue when it is
        proposed, so it would otherwise be lost), once."""
        held, self.state.held = self.state.held, None
        if held is None:
            return None
        self._save()
        try:
            return Proposal(**held)
        except TypeError:  # a sweep.json from another version: propose afresh
            return None

    def _idle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.should_stop():
            time.sleep(min(0.5, self.poll_s))

    # Directives -----------------------------------------------------------------------------------
    def _obey(self, pending: list[dict[str, Any]]) -> None:
        for d in sorted(pending, key=lambda d: d["id"]):
            try:
                commands = parse_directive(d["text"])
            except GrammarError as exc:
                self._post(
                    f"directive #{d['id']} is not in the sweep grammar ({exc}); not followed",
                    kind="system",
                )
                commands = []
            for c in commands:
                if c.verb == "set":
                    self.state.fixed.update(c.assign)
                    self.state.fixed_by.update({k: d["id"] for k in c.assign})
                elif c.verb == "sweep":
                    for key, values in c.values.items():
                        self.state.queue += [[key, v, d["id"]] for v in values]
                elif c.verb == "focus":
                    self.state.focus = list(c.keys)
                elif c.verb == "stop":
                    self.stopped_by_directive = True
            self.state.exhausted_at = None
            self._save()
            with self.ws.db(write=True) as db:
                ack_directive(db, d["id"], self.agent)
                if self.stopped_by_directive:
                    update_agent(db, self.agent, desired="down")
                    post_feed(
                        db, f"stopping as directed by #{d['id']}", agent=self.agent, kind="system"
                    )
            if self.stopped_by_directive:
                return

    # Proposals ------------------------------------------------------------------------------------
    def _context(self) -> tuple[dict[str, str], dict[str, Knob], dict[str, Any], str]:
        wt = tr.ensure_worktree(self.ws, self.agent)
        with self.ws.db(write=False) as db:
            row = get_agent(db, self.agent)
        agent_env = json.loads(row.get("env_json") or "{}")
        source = (wt / "train_gpt.py").read_text() if (wt / "train_gpt.py").exists() else ""
        return agent_env, discover(source), row, tr.code_hash(wt, "HEAD")

    def _seen(
        self,
        agent_env: dict[str, str],
        chash: str,
        seed: int | None = None,
        *,
        screened: tuple[dict[str, Knob], cfg.ScreenConfig, int] | None = None,
    ) -> Callable[[dict[str, str]], bool]:
        """Has this change run already? In full, or, with ``screened`` (the script's knobs,
        the screen settings and the full run's GPUs, when experiments are screened), as a
        screen that lost: either way proposing it again would learn nothing."""

        def seen(env: dict[str, str]) -> bool:
            full = {**agent_env, **env}
            with self.ws.db(write=False) as db:
                if find_duplicate(db, chash, canonical_env(full), seed) is not None:
                    return True
                if screened is None:
                    return False
                senv = canonical_env(screen_env(full, *screened))
                shot = find_duplicate(db, chash, senv, seed, screen=True)
                return shot is not None and shot["status"] == RunStatus.SCREEN_FAIL

        return seen

    def _free_seed(self, env: dict[str, str], agent_env: dict[str, str], chash: str) -> int | None:
        if not self._seen(agent_env, chash)(env):
            return None
        base = int(float({**agent_env, **env}.get("SEED", 1337)))
        for k in range(1, 50):
            if not self._seen(agent_env, chash, base + k)(env):
                return base + k
        return None

    def next_proposal(self) -> Proposal | None:
        conf = cfg.load(self.ws.config_path)
        agent_env, knobs, row, chash = self._context()
        wt = tr.ensure_worktree(self.ws, self.agent)
        env = tr.read_env(wt)
        with self.ws.db(write=False) as db:
            has_ref = reference_run(db, self.agent, row["base_pin_id"]) is not None
            repeats = seed_spread(seed_scores(db))[0] is not None
        fixed = {k: v for k, v in self.state.fixed.items() if env.get(k) != v}
        if fixed:
            ids = sorted({self.state.fixed_by.get(k, 0) for k in fixed})
            desc = ", ".join(f"{k}={v}" for k, v in sorted(fixed.items()))
            seed = self._free_seed({**env, **fixed}, agent_env, chash)
            tag = ", ".join(f"#{i}" for i in ids)
            return Proposal(
                fixed, f"directive {tag}: set {desc}", baseline=True, seed=seed, kind="fixed"
            )
        if not has_ref:
            seed = self._free_seed(env, agent_env, chash)
            return Proposal({}, "reference run on this base", seed=seed, kind="reference")
        if conf.sweep.measure_noise and not repeats and not self.state.noise_done:
            self.state.noise_done = True
            self._save()
            seed = self._free_seed(env, agent_env, chash)
            return Proposal({}, "noise: the reference re-seeded", seed=seed, kind="noise")
        # references, noise and `set` runs above are never screened; the search's moves are
        screened = (knobs, conf.screen, conf.gpus) if conf.screen.enabled else None
        seen = self._seen(agent_env, chash, screened=screened)
        while self.state.queue:
            key, value, did = self.state.queue.pop(0)
            self._save()
            if env.get(key) == value or seen({**env, key: value}):
                continue
            cur = env.get(key, agent_env.get(key, str(knobs[key].default) if key in knobs else "?"))
            return Proposal(
                {key: value},
                f"directive #{did}: sweep {key} {cur}\u2192{value}",
                kind="queued",
                directive_id=did,
                extra={"from": cur},
            )
        keys = candidate_keys(
            knobs,
            only=conf.sweep.keys,
            exclude=[*conf.sweep.exclude, *self.state.fixed],
            focus=self.state.focus,
        )
        return propose(
            knobs,
            {**agent_env, **env},
            keys,
            self.rng,
            random_prob=conf.sweep.random_prob,
            seen=seen,
            avoid=lambda key, value: f"{key}={value}" in self.state.crashed,
        )

    # Learning -----------------------------------------------------------------------------------
    def learn(self, p: Proposal, res: ExpResult) -> None:
        if p.kind == "fixed" and (
            res.verdict == "crash" or (res.verdict == "duplicate" and "(crash)" in res.note)
        ):
            for k in p.changes:
                self.state.fixed.pop(k, None)
            self._save()
            self._post(f"set {p.description} crashed; dropped it (see run {res.run_id})", "system")
            return
        if p.kind == "local" and res.verdict == "crash":
            # one knob changed and the script died: that value is broken, not just unlucky
            for k, v in p.changes.items():
                if f"{k}={v}" not in self.state.crashed:
                    self.state.crashed.append(f"{k}={v}")
            self._save()
            self._post(
                f"{p.description} crashed the script; not trying that value again "
                f"(see run {res.run_id})",
                run_id=res.run_id,
            )
            return
        if p.kind in ("local", "random", "queued") and res.verdict in (
            "aborted",
            RunStatus.SCREEN_FAIL,
        ):
            # stopped early, or screened out: worse than the base, a discard with no score
            label = p.description.split(": sweep ", 1)[-1]
            why = "aborted early" if res.verdict == "aborted" else "screened out"
            self._post(f"{label}: {why}, worse than the base (discarded)", run_id=res.run_id)
            if p.kind == "queued" and p.directive_id is not None:
                self._sweep_progress(p, None)
            self._save()
            return
        if p.kind in ("local", "random", "queued") and res.verdict in ("keep", "discard"):
            if res.val_bpb is None or res.best_before is None:
                return
            delta = res.val_bpb - res.best_before
            label = p.description.split(": sweep ", 1)[-1]
            effects = self.state.effects.setdefault(label, [])
            effects.append(delta)
            mean = sum(effects) / len(effects)
            n = len(effects)
            verdict = "kept" if res.verdict == "keep" else "within noise, discarded"
            if res.verdict == "discard" and delta < 0:
                verdict = "better but within noise, discarded"
            elif res.verdict == "discard":
                verdict = "worse, discarded"
            runs_s = f"{n} run{'s' if n > 1 else ''}"
            self._post(f"{label}: {signed(mean)} bpb over {runs_s} ({verdict})", run_id=res.run_id)
            if p.kind == "queued" and p.directive_id is not None:
                self._sweep_progress(p, delta)
        self._save()

    def _sweep_progress(self, p: Proposal, delta: float | None) -> None:
        did = str(p.directive_id)
        key, value = next(iter(p.changes.items()))
        results = self.state.sweeps.setdefault(did, {})
        results[f"{key}={value}"] = delta
        if any(int(item[2]) == p.directive_id for item in self.state.queue):
            return
        parts = [f"{kv} {signed(d)}" for kv, d in results.items() if d is not None]
        best = min(results.items(), key=lambda kv: kv[1] if kv[1] is not None else 9e9)[0]
        self._post(
            f"sweep #{did} done: {', '.join(parts)} bpb vs the best at the time; best {best}"
        )
