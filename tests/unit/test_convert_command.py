"""`vaultsync convert` as a person runs it: files, directories and stdin in, manifests on
stdout, the report on stderr, and an exit code that says whether everything moved."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from vaultsync.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "data" / "convert"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["convert", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_complete_conversion_exits_0_with_the_objects_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-f", str(CORPUS / "basic-secret-store.yaml"))
    assert code == 0
    assert list(yaml.safe_load_all(out)) == list(
        yaml.safe_load_all((CORPUS / "basic-secret-store.expected.yaml").read_text())
    )
    assert "every field moved" in err


def test_a_field_that_did_not_move_exits_1_and_names_it_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-f", str(CORPUS / "aws-sm-store-role.yaml"))
    assert code == 1
    assert out == ""
    assert "refused: spec.provider.aws.role:" in err


def test_a_dropped_field_alone_also_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-f", str(CORPUS / "metadata-copied.yaml"))
    assert code == 1
    assert yaml.safe_load(out)["kind"] == "ExternalSecret"


def test_json_output_is_a_list_and_a_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-o", "json", "-f", str(CORPUS / "cluster-external-secret-fanout.yaml"))
    assert code == 1
    assert json.loads(out)["kind"] == "List"
    assert len(json.loads(out)["items"]) == 2
    report = json.loads(err)
    assert (report["converted"], report["refused"], report["complete"]) == (2, 1, False)
    assert {"source", "field", "level", "reason"} <= set(report["findings"][0])


def test_a_directory_reads_every_manifest_in_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name in ("basic-secret-store.yaml", "basic-external-secret.yaml"):
        (tmp_path / name).write_text((CORPUS / name).read_text())
    (tmp_path / "notes.txt").write_text("not read")
    code, out, _ = run(capsys, "-f", str(tmp_path))
    assert code == 0
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["ExternalSecret", "SecretStore"]


def test_stdin_is_read_by_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO((CORPUS / "basic-secret-store.yaml").read_text()))
    code, out, _ = run(capsys)
    assert code == 0
    assert yaml.safe_load(out)["kind"] == "SecretStore"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: [unclosed", "while parsing"),
        ("a: &x [1]\nb: *x\n", "aliases (*name) are not accepted"),
    ],
)
def test_unreadable_input_exits_2_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    code, out, err = run(capsys, "-f", str(bad))
    assert code == 2
    assert out == ""
    assert str(bad) in err
    assert message in err


def test_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert (code, "no such file" in err) == (2, True)
