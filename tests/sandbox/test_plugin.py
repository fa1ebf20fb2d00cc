"""The sandbox is a plug-in: ``deskgate demo``/``dev`` reach it through the ``deskgate.commands``
entry points, the package and the image leave it out, and without it ``deskgate demo`` says how
to get it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from worker.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ONLY = ("sandbox", "bench", "tests")


def test_the_wheel_and_the_image_leave_the_sandbox_out_but_declare_its_commands(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("deskgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    assert "worker/commands/cli.py" in names
    assert not [n for n in names if n.split("/")[0] in SOURCE_ONLY]
    assert "[deskgate.commands]" in entry_points
    assert "demo = sandbox.demo:demo_command" in entry_points

    copied = [
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    ]
    assert "worker" in copied
    assert not set(copied) & set(SOURCE_ONLY)


def test_demo_without_the_sandbox_says_how_to_get_it() -> None:
    """As from the wheel: the entry point is declared, its module is not there."""
    code = (
        "import sys; sys.modules['sandbox'] = None\n"
        "from worker.commands.cli import main; raise SystemExit(main(['demo']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 2, done.stderr
    assert "deskgate demo runs on the sandbox" in done.stderr
    assert "pip install -e '.[dev]'" in done.stderr


@pytest.mark.parametrize(("command", "option"), [("demo", "--keep-redis"), ("dev", "--host")])
def test_sandbox_commands_load_from_the_entry_point_and_parse_their_own_arguments(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert f"usage: deskgate {command}" in shown
    assert option in shown
