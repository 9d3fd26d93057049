"""`dali-has scan` through `train.cli.main`: report, exit codes, written list and JSON."""
import json

from pipelines.files import read_file_list
from tests.pipelines.bad_images import make_bad_tree
from train.cli import main


def test_scan_reports_each_bad_file_and_fails(tmp_path, capsys):
    root = tmp_path / "data"
    expected = make_bad_tree(root)
    list_path, json_path = tmp_path / "usable.txt", tmp_path / "report.json"
    code = main(["scan", "--data", str(root), "--write-list", str(list_path), "--json", str(json_path), "--no-progress",
                 "--verbose"])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    for name, kinds in expected.items():
        named = [line for line in lines if f" {name}: " in line]
        assert len(named) == len(kinds), (name, named)
        assert {line.split()[0].lower() for line in named} == {severity for severity, _ in kinds}
    usable = {name for name, kinds in expected.items() if all(sev != "error" for sev, _ in kinds)}
    unusable = len(expected) - len(usable)
    assert lines[-1].startswith(f"scan: {len(expected)} files, {len(usable)} usable, {unusable} unusable; errors: ")
    assert {name for name, _ in read_file_list(list_path).samples} == {f"data/{name}" for name in usable}
    report = json.loads(json_path.read_text())
    assert report["unusable"] == unusable and report["files"] == len(expected)
    assert {p["path"] for p in report["problems"]} == {name for name, kinds in expected.items() if kinds}


def test_warnings_alone_exit_zero_and_notes_are_counted(tmp_path, capsys):
    root = tmp_path / "data"
    make_bad_tree(root)
    for bad in (root / "bad").iterdir():
        bad.unlink()
    (root / "bad").rmdir()
    assert main(["scan", "--data", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "WARNING good/png.jpg: is a PNG file named .jpg." in out
    assert "good/gray.jpg" not in out  # notes are counted, listed with --verbose
    assert "notes: 1 exif-rotated, 1 grayscale, 1 progressive (--verbose lists the 3 notes)" in out


def test_scan_of_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["scan", "--data", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err


def test_written_list_feeds_the_loader(tmp_path, capsys):
    from pipelines import make_loader

    root = tmp_path / "data"
    expected = make_bad_tree(root)
    list_path = root / "usable.txt"
    assert main(["scan", "--data", str(root), "--write-list", str(list_path), "--no-progress"]) == 1
    usable = len(read_file_list(list_path))
    assert usable == sum(all(sev != "error" for sev, _ in kinds) for kinds in expected.values())
    loader = make_loader(str(list_path), train=False, batch_size=3, crop=16, num_threads=1)
    labels = [label for _, batch in loader for label in batch.tolist()]
    assert len(labels) == usable and set(labels) == {1}  # class folders "bad" = 0, "good" = 1


def test_names_a_file_list_cannot_hold_are_left_out_and_reported(tmp_path, capsys):
    from tests.pipelines.bad_images import jpeg_bytes

    root = tmp_path / "data"
    for name in ["a/plain.jpg", "a/new\nline.jpg", "a/carriage\rreturn.jpg", "b\nc/in-folder.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg_bytes())
    list_path, json_path = tmp_path / "list.txt", tmp_path / "report.json"
    assert main(["scan", "--data", str(root), "--write-list", str(list_path), "--json", str(json_path),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 usable files" in out and "3 usable file(s) left out" in out
    assert out.count("is usable but not listed: it contains a newline") == 3
    assert [name for name, _ in read_file_list(list_path).samples] == ["data/a/plain.jpg"]
    not_listed = json.loads(json_path.read_text())["not_listed"]
    assert sorted(entry["path"] for entry in not_listed) == sorted(
        str(root / name) for name in ["a/new\nline.jpg", "a/carriage\rreturn.jpg", "b\nc/in-folder.jpg"])
