"""requirements.lock, what `make setup` installs: it pins every dependency pyproject.toml declares (with the test
extra), each within pyproject's range, and the pins the code needs (Lightning below 2.7)."""

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not locked (run make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is outside {req.specifier}"


def test_lightning_is_held_below_the_release_that_may_change_its_private_launcher():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (lightning,) = [Requirement(d) for d in project["dependencies"] if d.startswith("pytorch-lightning")]
    assert not lightning.specifier.contains("2.7.0") and _lock()["pytorch-lightning"] < Version("2.7")
    names = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    assert {"psutil", "nvidia-ml-py"} <= names  # imported by callbacks/, so declared
