"""Write requirements.lock: the exact versions of the project's dependencies (pyproject.toml, with the `test` extra)
and of everything they pull in, as installed in the running environment, the one the tests passed in.

    .venv/bin/python scripts/lock_env.py            # after `make test` passed: freeze what was tested

Only the dependency closure is written (not whatever else the environment holds). torch is pinned without its local
build tag (2.13.0, not 2.13.0+cpu), so a CPU or a CUDA wheel of the same release both satisfy the lock.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("test",)


def closure(requirements: list[str]) -> dict[str, str]:
    env = default_environment()
    seen: dict[str, str] = {}
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"error: {req.name} is required but not installed; install the project first (make setup)")
        for wanted in [""] + sorted(req.extras):
            key = f"{name}[{wanted}]"
            if key in seen:
                continue
            seen[key] = dist.version
            for sub in dist.requires or []:
                todo.append((Requirement(sub), wanted))
    return {k.split("[")[0]: v for k, v in seen.items()}


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    pins = closure(wanted)
    lines = [f"{name}=={re.sub(r'[+].*$', '', version) if name == 'torch' else version}" for name, version in sorted(pins.items())]
    header = (
        "# The tested environment: every dependency of pyproject.toml (+ the test extra), pinned.\n"
        "# Written by scripts/lock_env.py from the environment the tests passed in; `make setup` installs it.\n"
        f"# Python {sys.version.split()[0]}. torch: a CPU or CUDA wheel of this release (see README, Installing).\n"
    )
    (ROOT / "requirements.lock").write_text(header + "\n".join(lines) + "\n")
    print(f"{len(lines)} pins -> requirements.lock")


if __name__ == "__main__":
    main()
