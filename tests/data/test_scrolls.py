"""Reading SCROLLS rows from local folders and zips, and the one-line errors for bad data."""

import json
import zipfile

import pytest

from data.scrolls import load_rows, parse_jsonl, read_local
from study.errors import StudyError

ROWS = [{"id": "1", "pid": "1_0", "input": "doc one", "output": "sum one"}, {"id": "1", "pid": "1_1", "input": "doc one", "output": "sum two"}]


def _write(folder, split, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_local_folder(tmp_path):
    _write(tmp_path, "validation", ROWS)
    assert read_local(tmp_path, "validation") == ROWS


def test_local_scrolls_zip_is_read_directly(tmp_path):
    z = tmp_path / "qasper.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("qasper/validation.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS))
        f.writestr("qasper/train.jsonl", json.dumps(ROWS[0]) + "\n")
    assert read_local(z, "validation", "qasper") == ROWS
    assert load_rows("hub", "qasper", "qa", "train", path=str(z)) == ROWS[:1]


def test_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(StudyError, match=r"train.jsonl line 2: not valid JSON"):
        read_local(tmp_path, "train")


def test_row_without_input_is_named(tmp_path):
    with pytest.raises(StudyError, match=r"x.jsonl line 1: a row needs 'id', 'input'"):
        parse_jsonl(['{"id": "a"}'], "x.jsonl")


def test_missing_path(tmp_path):
    with pytest.raises(StudyError, match=r"data.path=.*nope does not exist"):
        load_rows("hub", "gov_report", "summarization", "train", path=str(tmp_path / "nope"))


def test_empty_split(tmp_path):
    (tmp_path / "validation.jsonl").write_text("\n")
    with pytest.raises(StudyError, match="the validation split of data=gov_report is empty"):
        load_rows("hub", "gov_report", "summarization", "validation", path=str(tmp_path))


def test_missing_outputs_outside_test(tmp_path):
    _write(tmp_path, "train", [{"id": "1", "input": "x"}])
    with pytest.raises(StudyError, match="rows without 'output'"):
        load_rows("hub", "gov_report", "summarization", "train", path=str(tmp_path))


def test_unknown_source():
    with pytest.raises(StudyError, match="data.source=ftp is not one of"):
        load_rows("ftp", "gov_report", "summarization", "train")


def test_unreachable_hub_is_one_line_with_the_offline_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StudyError) as e:
        load_rows("hub", "gov_report", "summarization", "validation", cache_dir=str(tmp_path))
    assert "data=synthetic" in str(e.value) and "data.path=" in str(e.value) and "\n" not in str(e.value)


def test_bytes_that_are_not_utf8_name_file_and_line(tmp_path):
    good = (json.dumps(ROWS[0]) + "\n").encode()
    (tmp_path / "validation.jsonl").write_bytes(good + good + b'{"id": "2", "input": "caf\xe9", "output": "x"}\n')
    with pytest.raises(StudyError, match=r"validation.jsonl line 3: not UTF-8 text \(byte 0xe9 at column 26\)"):
        read_local(tmp_path, "validation")
    z = tmp_path / "gov_report.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("gov_report/train.jsonl", b"\xff\xfe" + good)
    with pytest.raises(StudyError, match=r"gov_report.zip:gov_report/train.jsonl line 1: not UTF-8 text \(byte 0xff at column 1\)"):
        read_local(z, "train", "gov_report")


@pytest.mark.parametrize(
    "value, shown", [(None, "null"), (3, "a number"), (["a", "b"], "a list"), ({"text": "a"}, "an object"), (True, "a boolean")]
)
@pytest.mark.parametrize("field", ["output", "input"])
def test_a_field_that_is_not_a_string_names_file_and_line(tmp_path, field, value, shown):
    _write(tmp_path, "train", [ROWS[0], {**ROWS[1], field: value}])
    with pytest.raises(StudyError, match=rf"train.jsonl line 2: '{field}' must be a string, not {shown}"):
        read_local(tmp_path, "train")


def test_a_test_split_may_have_null_outputs(tmp_path):
    rows = [{"id": "1", "pid": "1_0", "input": "doc", "output": None}, {"id": "2", "pid": "2_0", "input": "doc"}]
    _write(tmp_path, "test", rows)
    assert read_local(tmp_path, "test") == rows
    _write(tmp_path, "validation", rows)
    with pytest.raises(StudyError, match=r"validation.jsonl line 1: 'output' must be a string, not null"):
        read_local(tmp_path, "validation")
