"""The command line of report.py: directories, then `key=value` overrides of conf/report.yaml, all checked up front.

report.py is a Hydra app over conf/report.yaml; `hydra_argv` turns positional directories into the `dirs=[...]` key
and checks everything before Hydra composes (Hydra's own errors are pages). Bad input raises StudyError with one line
that names the bad value and what is allowed.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from report.steady import COSTS as ALL_COSTS
from study.errors import StudyError

CONF = Path(__file__).resolve().parent.parent / "conf" / "report.yaml"
STATUSES = ("ok", "oom", "failed", "interrupted", "incomplete")  # as the report names them ("running" -> incomplete)
FORMATS = ("png", "svg", "pdf")
BUDGET_UNITS = {"kwh": "kWh", "train_hours": "hours", "min_inference_samples_per_s": "samples/s"}
BASES = ("measured", "projected")  # budget.basis: the measured costs of the runs, or the projected full fine-tune
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")
USAGE = "usage: python report.py <dir> [<dir> ...] [key=value ...]"
HYDRA_KEYS = ("defaults", "hydra")  # Hydra's settings in conf/report.yaml, not report keys
# Hydra's command-line flags, passed through as they are; these take a value (--info's is optional)
HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                     "--experimental-rerun", "--shell-completion", "-sc"}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
HELP_END = "# ---- Hydra's own settings"


def _leaves(node, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        keys += _leaves(value, f"{name}.") if isinstance(value, DictConfig) else [name]
    return keys


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Directories and overrides. An argument is an override when it reads `key=value` with a plain dotted key and
    is not an existing path (Hydra job directories such as `model=led_tiny,seq_len=128` contain `=` too)."""
    dirs, overrides = [], []
    for arg in argv:
        if _KEY.match(arg) and not os.path.exists(arg):
            overrides.append(arg)
        else:
            dirs.append(arg)
    return dirs, overrides


def _number(cfg: DictConfig, key: str, unit: str, minimum: float = 0.0, allow_null: bool = True):
    value = OmegaConf.select(cfg, key)
    if value is None and allow_null:
        return None
    try:
        number = float(value)
        ok = math.isfinite(number) and number >= minimum and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        null = " or null for no limit" if allow_null else ""
        raise StudyError(f"{key}={value} is not allowed; give a number >= {minimum:g} ({unit}){null}")
    return number


def base_config() -> DictConfig:
    """conf/report.yaml's report keys (Hydra's settings left out)."""
    base = OmegaConf.load(CONF)
    for key in HYDRA_KEYS:
        base.pop(key, None)
    return base


def load(overrides: list[str]) -> DictConfig:
    base = base_config()
    allowed = _leaves(base)
    for item in overrides:
        key = item.split("=", 1)[0]
        if key not in allowed:
            raise StudyError(f"unknown key '{key}' in '{item}'; allowed keys: {', '.join(allowed)}")
    try:
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
    except Exception as e:  # noqa: BLE001 - OmegaConf's own errors are pages; say it in one line
        raise StudyError(f"cannot read overrides {' '.join(overrides)}: {str(e).splitlines()[0]}") from None
    check(cfg)
    return cfg


def check(cfg: DictConfig) -> None:
    for key, unit in BUDGET_UNITS.items():
        value = _number(cfg, f"budget.{key}", unit)
        cfg.budget[key] = value
    if cfg.budget.basis not in BASES:
        raise StudyError(f"budget.basis={cfg.budget.basis} is not allowed; choose from: {', '.join(BASES)}")
    cfg.project.epochs = _number(cfg, "project.epochs", "epochs")
    cfg.project.samples = _number(cfg, "project.samples", "training samples")
    if cfg.project.epochs is not None and cfg.project.samples is not None:
        raise StudyError(f"project.epochs={cfg.project.epochs:g} and project.samples={cfg.project.samples:g} are both set; give one of them")
    if cfg.budget.basis == "projected" and cfg.project.epochs is None and cfg.project.samples is None:
        raise StudyError("budget.basis=projected needs a projection; give project.epochs=N or project.samples=N")
    if not isinstance(cfg.pool_hardware, bool):
        raise StudyError(f"pool_hardware={cfg.pool_hardware} is not allowed; choose from: true, false")
    for axis, name in cfg.costs.items():
        if name not in ALL_COSTS:
            raise StudyError(f"costs.{axis}={name} is not a recorded cost; choose from: {', '.join(ALL_COSTS)}")
    if cfg.accuracy not in ("infer", "train"):
        raise StudyError(f"accuracy={cfg.accuracy} is not allowed; choose from: infer, train")
    statuses = cfg.statuses if isinstance(cfg.statuses, ListConfig) else [cfg.statuses]
    for status in statuses:
        if status not in STATUSES:
            raise StudyError(f"statuses={status} is not a status; choose from: {', '.join(STATUSES)}")
    cfg.statuses = list(statuses)
    formats = cfg.figures.formats if isinstance(cfg.figures.formats, ListConfig) else [cfg.figures.formats]
    for fmt in formats:
        if fmt not in FORMATS:
            raise StudyError(f"figures.formats={fmt} is not allowed; choose from: {', '.join(FORMATS)}")
    if "png" not in formats:
        formats = ["png", *formats]  # report.md and report.html show the PNGs
    cfg.figures.formats = list(formats)
    cfg.figures.dpi = int(_number(cfg, "figures.dpi", "dots per inch", minimum=30, allow_null=False))
    if cfg.out is not None and not str(cfg.out).strip():
        raise StudyError("out= is empty; give a directory, or null for <first dir>/report")
    if cfg.out is not None and Path(str(cfg.out)).expanduser().exists() and not Path(str(cfg.out)).expanduser().is_dir():
        raise StudyError(f"out={cfg.out} is an existing file, not a directory; give a directory, or null for <first dir>/report")


def parse(argv: list[str]) -> tuple[list[Path], DictConfig]:
    dirs, overrides = split_args(argv)
    cfg = load(overrides)
    return resolve(cfg, [*dirs, *cfg.dirs])


def from_hydra(cfg: DictConfig) -> tuple[list[Path], DictConfig]:
    """The config Hydra composed (positional directories already in `dirs`), checked as `load` checks overrides."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    check(cfg)
    return resolve(cfg, list(cfg.dirs))


def resolve(cfg: DictConfig, dirs: list[str]) -> tuple[list[Path], DictConfig]:
    if not dirs:
        raise StudyError(f"no directory given; {USAGE} (a sweep, a run or outputs/)")
    paths = []
    for d in dirs:
        path = Path(d).expanduser()
        if not path.exists():
            raise StudyError(f"{d} does not exist; give run directories, sweep directories or outputs/")
        if not path.is_dir():
            raise StudyError(f"{d} is not a directory; give run directories, sweep directories or outputs/")
        paths.append(path)
    cfg.dirs = [str(p) for p in paths]
    if cfg.out is None:
        cfg.out = str(paths[0] / "report")
    return paths, cfg


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hydra_argv(argv: list[str]) -> list[str]:
    """report.py's command line as Hydra reads it: Hydra's flags and `hydra.*` overrides as they are, positional
    directories as `dirs=[...]`. A command that runs the report is checked in full first (StudyError, one line)."""
    hydra_args, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        takes_value = arg in HYDRA_VALUE_FLAGS or (arg in ("--info", "-i") and i + 1 < len(argv) and argv[i + 1] in INFO_TOPICS)
        if takes_value:
            hydra_args += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith("-") or re.match(r"^[+~]?hydra[./]", arg):
            hydra_args.append(arg)
        else:
            rest.append(arg)
        i += 1
    dirs, overrides = split_args(rest)
    informational = any(a.startswith("-") and a not in ("-m", "--multirun") for a in hydra_args)
    if not informational:
        parse(rest)  # every check, before Hydra composes
    elif overrides:
        load(overrides)  # `--cfg job budget.kwh=x`: still one line for a bad key
    dirs_override = [f"dirs=[{','.join(_quote(d) for d in dirs)}]"] if dirs else []
    return [*hydra_args, *overrides, *dirs_override]


def help_text() -> str:
    """report.py --help: conf/report.yaml's report keys with their comments, then Hydra's flags."""
    text = CONF.read_text().split(HELP_END)[0].rstrip()
    return (
        "report.py: the trade-off report over train runs.\n\n" + USAGE + "\n\nThe keys (conf/report.yaml):\n\n"
        + text.replace("$", "$$") + "\n\n== Flags ==\n$FLAGS_HELP\n"
    )
