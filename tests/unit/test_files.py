"""Files an operator names on the command line (``config/files.py``): an output never goes
through a link someone planted; a file the service reads is replaced where the link points."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import files
from connectors.provisioning import AdminCredential, SetupRequest
from connectors.servicenow.config import ServiceNowDeskConfig
from connectors.servicenow.setup import setup
from tests.unit.test_report_command import NOW, export
from worker.commands import setup_cli
from worker.commands.report.command import run as report


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """A file someone else cares about, and a link to it where an output is about to go."""
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    link = tmp_path / "out"
    link.symlink_to(victim)
    return link, victim


def test_an_output_refuses_a_symbolic_link_and_leaves_its_target_alone(
    planted: tuple[Path, Path],
) -> None:
    link, victim = planted
    with pytest.raises(OSError, match="symbolic link") as refused:
        files.write_output(link, "overwritten")
    assert refused.value.filename == str(link)
    assert victim.read_text() == "precious\n" and link.is_symlink()


def test_an_output_refuses_a_hard_link_and_what_is_not_a_plain_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    os.link(victim, tmp_path / "out")
    with pytest.raises(OSError, match="2 names"):
        files.write_output(tmp_path / "out", "overwritten")
    assert victim.read_text() == "precious\n"
    with pytest.raises(OSError, match="not a plain file"):
        files.write_output("/dev/null", "a device")


def test_an_output_replaces_a_plain_file_and_private_means_private(tmp_path: Path) -> None:
    out = tmp_path / "trail.csv"
    out.write_text("an older, longer export\n")
    out.chmod(0o644)
    files.write_output(out, "new\n", files.PRIVATE)
    assert out.read_text() == "new\n" and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_audit_export_refuses_a_planted_link(
    planted: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from connectors.registry import SETTINGS
    from tests.conftest import settings_data
    from worker import audit
    from worker.commands import cli

    loaded = SETTINGS(**settings_data())
    monkeypatch.setattr(cli, "load_settings", lambda: loaded)
    monkeypatch.setattr(audit, "read", lambda *_: iter([]))  # no Redis needed: nothing to read
    link, victim = planted
    argv = ["audit", "export", "--since", "1d", "--output", str(link)]
    assert cli.main(argv) == 2
    assert f"--output: cannot write {link}: refused, it is a symbolic link" in (
        capsys.readouterr().err
    )
    assert victim.read_text() == "precious\n"


def test_report_html_refuses_a_planted_link(
    planted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link, victim = planted
    argv = ["--since", "2026-11-01", "--events", str(export(tmp_path)), "--html", str(link)]
    assert report(argv, now=NOW) == 2
    assert "--html: cannot write" in capsys.readouterr().err
    assert victim.read_text() == "precious\n"


def test_setup_update_set_refuses_a_planted_link(planted: tuple[Path, Path]) -> None:
    link, victim = planted
    config = ServiceNowDeskConfig.model_validate(
        {
            "kind": "servicenow", "base_url": "https://acme.service-now.com",
            "username": "deskgate.integration", "password": "a-password",
            "flag_field": "u_idv_request", "triggers": {"mfa_reset": "MFA reset"},
        }
    )  # fmt: skip
    admin = AdminCredential("admin", SecretStr("an-admin-password"))
    request = SetupRequest(
        desk="acme_sn", config=config, public_url="https://deskgate.acme.test", admin=admin,
        apply=False, update_set=link,
    )  # fmt: skip
    with pytest.raises(OSError, match="symbolic link"):
        setup(request)
    assert victim.read_text() == "precious\n"


def test_env_file_through_a_link_updates_the_target_in_place(tmp_path: Path) -> None:
    """The service reads the link's target: replacing the link with a new file would leave it
    reading the old secret."""
    real = tmp_path / "etc" / "deskgate.env"
    real.parent.mkdir()
    real.write_text("OTHER=1\nDESKGATE_X=old-secret\n")
    real.chmod(0o640)
    link = tmp_path / "deskgate.env"
    link.symlink_to(real)
    where = setup_cli.env_file_writer(link)("DESKGATE_X", "new-secret")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text() == "OTHER=1\nDESKGATE_X=new-secret\n"
    assert str(real.resolve()) in where
    # Its group keeps reading it (the service's); the world never could.
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert [p.name for p in real.parent.iterdir()] == ["deskgate.env"]  # no temporary left


def test_secret_file_through_a_link_updates_the_target_and_drops_world_access(
    tmp_path: Path,
) -> None:
    real = tmp_path / "secret"
    real.write_text("old\n")
    real.chmod(0o644)
    link = tmp_path / "webhook-secret"
    link.symlink_to(real)
    setup_cli.secret_file_writer(link)("DESKGATE_X", "new-secret")
    assert link.is_symlink() and real.read_text() == "new-secret\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh"
    setup_cli.secret_file_writer(fresh)("DESKGATE_X", "new-secret")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
