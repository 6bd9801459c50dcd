"""Fetch a pull request's records folder through GitHub's REST API (httpx).

Only what pinning needs: the pull request (title, author, head commit), its changed files,
and the content of some of them at the head commit. Contents are read from the base
repository at the head sha, which GitHub serves for every pull request (``refs/pull/N``),
so a deleted fork does not break the pin. ``GITHUB_TOKEN`` is used when set (5,000 requests
an hour instead of 60). Errors say what to do: a missing PR, a missing file, a rate limit
with its reset time, a bad token, or an unreachable GitHub.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import httpx

API = "https://api.github.com"
DEFAULT_REPO = "openai/parameter-golf"
SKIP_SUFFIXES = (".ptz", ".pt", ".bin", ".npz", ".safetensors", ".zst")


class GitHubError(RuntimeError):
    """A GitHub request failed; the message is fit for the operator."""


@dataclass
class PullRecord:
    repo: str
    number: int
    title: str
    author: str
    head_sha: str
    script_path: str
    files: dict[str, bytes] = field(default_factory=dict)  # path in the PR -> content

    @property
    def folder(self) -> str:
        return str(PurePosixPath(self.script_path).parent)


def client(transport: httpx.BaseTransport | None = None, token: str | None = None) -> httpx.Client:
    token = token if token is not None else os.environ.get("GITHUB_TOKEN")
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(
        base_url=API, headers=headers, transport=transport, timeout=30.0, follow_redirects=True
    )


def _check(resp: httpx.Response, what: str) -> httpx.Response:
    if resp.status_code < 400:
        return resp
    remaining = resp.headers.get("x-ratelimit-remaining")
    if resp.status_code in (403, 429) and (remaining == "0" or resp.status_code == 429):
        reset = resp.headers.get("x-ratelimit-reset")
        when = time.strftime("%H:%M:%S", time.localtime(int(reset))) if reset else "later"
        hint = "" if os.environ.get("GITHUB_TOKEN") else "; set GITHUB_TOKEN for a higher limit"
        raise GitHubError(f"GitHub rate limit exceeded fetching {what}; resets at {when}{hint}")
    if resp.status_code == 401:
        raise GitHubError("GitHub refused the credentials: check GITHUB_TOKEN")
    if resp.status_code == 404:
        raise GitHubError(f"not found on GitHub: {what}")
    try:
        message = resp.json().get("message", "")
    except ValueError:
        message = resp.text[:200]
    raise GitHubError(f"GitHub answered {resp.status_code} for {what}: {message}")


def _get(http: httpx.Client, url: str, what: str, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    try:
        return _check(http.get(url, **kw), what)
    except httpx.HTTPError as exc:
        raise GitHubError(f"cannot reach GitHub for {what}: {exc}") from exc


def _choose_script(paths: list[str], wanted: str | None, number: int) -> str:
    if wanted:
        if wanted not in paths:
            raise GitHubError(f"PR #{number} does not change {wanted}")
        return wanted
    scripts = [p for p in paths if PurePosixPath(p).name == "train_gpt.py"]
    records = [p for p in scripts if p.startswith("records/")]
    pick = records or scripts
    if len(pick) == 1:
        return pick[0]
    if not pick:
        raise GitHubError(f"PR #{number} changes no train_gpt.py; pass --path FILE")
    raise GitHubError(f"PR #{number} changes several scripts ({', '.join(pick)}); pass --path")


def fetch_pull(
    number: int,
    repo: str = DEFAULT_REPO,
    *,
    path: str | None = None,
    transport: httpx.BaseTransport | None = None,
    recursive: bool = False,
) -> PullRecord:
    """The PR's script and the other files of its folder, at the PR's head commit.

    ``recursive`` also takes the files in the folder's subfolders (``logs/train0.txt``): an
    audit needs every log, a pin only the files it copies next to the script.
    """
    if "/" not in repo:
        raise GitHubError(f"--repo must be OWNER/NAME, not {repo!r}")
    with client(transport) as http:
        pr = _get(http, f"/repos/{repo}/pulls/{number}", f"pull request #{number} in {repo}")
        info = pr.json()
        changed: list[dict] = []
        for page in range(1, 31):  # GitHub lists at most 3,000 files, 100 a page
            resp = _get(
                http,
                f"/repos/{repo}/pulls/{number}/files",
                f"the files of PR #{number}",
                params={"per_page": 100, "page": page},
            )
            batch = resp.json()
            changed += batch
            if len(batch) < 100:
                break
        present = [f["filename"] for f in changed if f.get("status") != "removed"]
        script = _choose_script(present, path, number)
        folder = PurePosixPath(script).parent
        wanted = [
            p
            for p in present
            if PurePosixPath(p).parent == folder
            or (recursive and folder in PurePosixPath(p).parents)
        ]
        sha = info["head"]["sha"]
        record = PullRecord(
            repo=repo,
            number=number,
            title=info.get("title") or "",
            author=(info.get("user") or {}).get("login") or "?",
            head_sha=sha,
            script_path=script,
        )
        for p in wanted:
            if p != script and p.endswith(SKIP_SUFFIXES):
                continue  # a model artifact: not needed to build on the code
            resp = _get(
                http,
                f"/repos/{repo}/contents/{p}",
                f"{p} at {sha[:10]}",
                params={"ref": sha},
                headers={"Accept": "application/vnd.github.raw+json"},
            )
            record.files[p] = resp.content
    return record
