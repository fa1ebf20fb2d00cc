"""The locks (requirements/*.txt, `make lock`) pin every dependency pyproject.toml asks for, at a
version its range allows, with hashes; the image and `make install` install from them alone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\$")


def pins(name: str) -> dict[str, str]:
    """Package → version of a lock, each checked to carry at least one sha256 hash."""
    found: dict[str, str] = {}
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    for at, line in enumerate(lines):
        if not line or line[0] in "# ":
            continue
        match = PIN.match(line)
        assert match, f"{name}: not an exact pin with hashes: {line!r}"
        assert lines[at + 1].strip().startswith("--hash=sha256:"), f"{name}: {line!r} has no hash"
        found[canonicalize_name(match[1])] = match[2]
    return found


def wanted(extra: str | None) -> list[Requirement]:
    """pyproject's requirements: the runtime set, or an extra with the extras it names."""
    if extra is None:
        return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    out: list[Requirement] = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for raw in PYPROJECT["project"]["optional-dependencies"][extra]:
        requirement = Requirement(raw)
        if requirement.name == "deskgate":
            for inner in requirement.extras:
                out += wanted(inner)
        else:
            out.append(requirement)
    return out


@pytest.mark.parametrize(("lock", "extra"), [("runtime.txt", None), ("dev.txt", "dev")])
def test_the_lock_pins_every_requirement_at_a_version_pyproject_allows(
    lock: str, extra: str | None
) -> None:
    """Fails when pyproject.toml changed and `make lock` was not run."""
    pinned = pins(lock)
    for requirement in wanted(extra):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: run `make lock`"
        )


def test_the_dev_lock_agrees_with_the_runtime_lock() -> None:
    """Tests run on the versions the image ships."""
    runtime, dev = pins("runtime.txt"), pins("dev.txt")
    assert {n: v for n, v in dev.items() if n in runtime} == runtime


def test_the_build_backend_is_locked_too() -> None:
    """The project is installed without build isolation, so its backend comes from the lock."""
    backend = canonicalize_name(Requirement(PYPROJECT["build-system"]["requires"][0]).name)
    assert backend in pins("runtime.txt")
    assert backend in pins("dev.txt")


def test_the_image_and_make_install_install_only_from_the_locks() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements/runtime.txt" in dockerfile
    assert "--no-deps --no-build-isolation ." in dockerfile
    assert "--require-hashes --no-deps -r requirements/dev.txt" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile


def test_make_sbom_lists_every_locked_package_with_its_version_and_hashes(tmp_path: Path) -> None:
    out = tmp_path / "sbom.json"
    subprocess.run(
        # -o install: this venv as it is (a test never reinstalls it)
        ["make", "--no-print-directory", "-s", "-o", "install", "sbom", f"SBOM={out}",
         f"VENV={Path(sys.executable).parent.parent}"],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["metadata"]["component"]["name"] == "deskgate"
    listed = {
        canonicalize_name(c["name"]): (
            c["version"], c["purl"], c["externalReferences"][0]["hashes"]
        )
        for c in bom["components"]
    }  # fmt: skip
    assert {name: version for name, (version, _, _) in listed.items()} == pins("runtime.txt")
    for name, (version, purl, hashes) in listed.items():
        assert purl == f"pkg:pypi/{name}@{version}"
        assert hashes and all(h["alg"] == "SHA-256" for h in hashes)


def test_pyprojects_version_is_the_newest_release_in_the_changelog() -> None:
    """The version lives in pyproject.toml; a release renames the changelog's "Unreleased"
    section to it (CHANGELOG.md, "Versions")."""
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", CHANGELOG, re.M)
    assert releases, "CHANGELOG.md lists no release"
    assert PYPROJECT["project"]["version"] == releases[0]
    assert CHANGELOG.index("## [Unreleased]") < CHANGELOG.index(f"## [{releases[0]}]")


def test_the_license_file_is_the_one_pyproject_names() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
