"""Where SCROLLS rows come from: the hub zip, a local zip or folder of jsonl, or the embedded generator.

Every source yields the same thing: per split, a list of {id, pid, input, output} rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

from study.errors import StudyError

SPLITS = ("train", "validation", "test")
SCROLLS_URL = "https://huggingface.co/datasets/tau/scrolls/resolve/main/{task}.zip"


def _json_type(value) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def parse_jsonl(
    lines, origin: str, required: tuple[str, ...] = ("id", "input"), strings: tuple[str, ...] = ("input", "output"),
    nullable: tuple[str, ...] = (),
) -> list[dict]:
    """Rows of a jsonl file (SCROLLS rows by default); a malformed line is an error naming the file and the line.
    Give the lines as bytes (a file opened "rb"): bytes that are not UTF-8 are then named by line too. A field in
    `strings` that a row has must be a string (or null, where `nullable` names it: a test split's outputs)."""
    rows = []
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise StudyError(f"{origin} line {number}: not UTF-8 text (byte {line[e.start]:#04x} at column {e.start + 1})") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise StudyError(f"{origin} line {number}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or any(k not in row for k in required):
            raise StudyError(f"{origin} line {number}: a row needs {', '.join(repr(k) for k in required)}")
        for k in strings:
            if k in row and not isinstance(row[k], str) and not (row[k] is None and k in nullable):
                raise StudyError(f"{origin} line {number}: '{k}' must be a string, not {_json_type(row[k])}")
        rows.append(row)
    return rows


def read_local(path: str | os.PathLike, split: str, task: str | None = None) -> list[dict]:
    """One split from a folder of {split}.jsonl or from a SCROLLS zip (members <task>/{split}.jsonl or {split}.jsonl)."""
    nullable = ("output",) if split == "test" else ()  # SCROLLS' test rows have no reference
    p = Path(path).expanduser()
    if not p.exists():
        raise StudyError(f"data.path={path} does not exist; give a SCROLLS zip or a folder of train/validation/test.jsonl")
    if p.is_dir():
        f = p / f"{split}.jsonl"
        if not f.exists():
            raise StudyError(f"data.path={path} has no {split}.jsonl")
        with open(f, "rb") as fh:  # bytes: parse_jsonl names a line that is not UTF-8
            return parse_jsonl(fh, str(f), nullable=nullable)
    if zipfile.is_zipfile(p):
        # Read the member directly: datasets refuses local zip:// paths when HF_DATASETS_OFFLINE is set.
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.endswith(f"/{split}.jsonl") or n == f"{split}.jsonl"]
            if task:
                names = sorted(names, key=lambda n: not n.startswith(f"{task}/"))
            if not names:
                raise StudyError(f"data.path={path} holds no {split}.jsonl")
            with z.open(names[0]) as fh:
                return parse_jsonl(fh, f"{p}:{names[0]}", nullable=nullable)
    raise StudyError(f"data.path={path} is neither a folder nor a zip file")


def read_hub(task: str, split: str, url: str | None, cache_dir: str | None) -> list[dict]:
    """One split of a SCROLLS task from the hub zip (the only form datasets >= 4 can still load)."""
    url = url or SCROLLS_URL.format(task=task)
    try:
        import datasets

        ds = datasets.load_dataset("json", data_files={split: f"zip://{task}/{split}.jsonl::{url}"}, split=split, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - any hub failure gets the same advice
        raise StudyError(
            f"cannot load SCROLLS '{task}' from the hub ({type(e).__name__}); offline, use data=synthetic or data.path=<local zip or folder>"
        ) from None
    return [dict(r) for r in ds]


def synthetic_dir(cache_dir: str | os.PathLike, task: str, params: dict) -> Path:
    """The folder the generator writes a corpus to, keyed by everything that shapes it."""
    key = hashlib.sha1(json.dumps({"task": task, **params}, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cache_dir) / "synthetic" / f"{task}-{key}"


def read_synthetic(task: str, split: str, params: dict, cache_dir: str | os.PathLike) -> list[dict]:
    from data.synthetic import write_corpus

    folder = synthetic_dir(cache_dir, task, params)
    params = dict(params)
    if not (folder / "test.jsonl").exists():  # test is written last: its presence means a whole corpus
        sizes = {"train": params.pop("n_train"), "validation": params.pop("n_validation"), "test": params.pop("n_test")}
        write_corpus(folder, task, sizes, **params)
    return read_local(folder, split)


def load_rows(source: str, task_name: str, task: str, split: str, path=None, hub_url=None, synthetic=None, cache_dir=".cache") -> list[dict]:
    """Rows of one split from the configured source, checked to be non-empty."""
    if split not in SPLITS:
        raise StudyError(f"split '{split}' is not one of: {', '.join(SPLITS)}")
    if path:
        rows = read_local(path, split, task_name)
    elif source == "synthetic":
        rows = read_synthetic(task, split, dict(synthetic), cache_dir)
    elif source == "hub":
        rows = read_hub(task_name, split, hub_url, os.path.join(cache_dir, "datasets"))
    else:
        raise StudyError(f"data.source={source} is not one of: hub, synthetic (or set data.path to a local zip or folder)")
    if not rows:
        raise StudyError(f"the {split} split of data={task_name} is empty")
    if split != "test" and any("output" not in r for r in rows):
        raise StudyError(f"the {split} split of data={task_name} has rows without 'output'")
    return rows


def group_references(rows: list[dict]) -> dict[str, dict]:
    """Evaluation view: one entry per id, its input and every reference output, in first-seen order."""
    grouped: dict[str, dict] = {}
    for r in rows:
        entry = grouped.setdefault(r["id"], {"input": r["input"], "references": []})
        if r.get("output") is not None:
            entry["references"].append(r["output"])
    return grouped
