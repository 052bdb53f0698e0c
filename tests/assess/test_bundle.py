"""The signed bundle: one deterministic zip of a signed report directory, verifiable offline, tamper-evident."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from amulet.assess import bundle_bytes, verify_report, write_bundle
from amulet.cli import app

SIGNED = {"report.html", "report.pdf", "results.json", "junit.xml"}


def test_bundle_holds_every_signed_file_the_signature_and_the_key(shared_run: dict[str, Any], tmp_path: Path):
    path = write_bundle(shared_run["out"], tmp_path / "bundle.zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert names == SIGNED | {"manifest.json", "manifest.json.sig", "public_key.pem", "VERIFY.txt"}
        for name in SIGNED:  # byte for byte what the report directory holds
            assert zf.read(name) == (shared_run["out"] / name).read_bytes()
        assert b"BEGIN PUBLIC KEY" in zf.read("public_key.pem")
        assert "amulet verify-report" in zf.read("VERIFY.txt").decode()
    result = verify_report(path)
    assert result.ok, result.problems
    assert not result.warnings or all("integrity" in w for w in result.warnings)


def test_bundle_bytes_are_deterministic(shared_run: dict[str, Any]):
    assert bundle_bytes(shared_run["out"]) == bundle_bytes(shared_run["out"])


def test_verifying_against_the_bundled_key_and_a_foreign_key(shared_run: dict[str, Any], tmp_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = write_bundle(shared_run["out"], tmp_path / "bundle.zip")
    key_file = tmp_path / "public_key.pem"
    key_file.write_bytes(zipfile.ZipFile(path).read("public_key.pem"))
    assert verify_report(path, public_key=key_file).ok
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = verify_report(path, public_key=foreign)
    assert not result.ok and any("different key" in p for p in result.problems)


def _rewrite(src: Path, dst: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, data if info.filename == name else zin.read(info))


def test_a_changed_file_or_manifest_fails_verification(shared_run: dict[str, Any], tmp_path: Path):
    path = write_bundle(shared_run["out"], tmp_path / "bundle.zip")
    tampered = tmp_path / "tampered.zip"
    _rewrite(path, tampered, "results.json", b'{"verdict": "pass"}')
    result = verify_report(tampered)
    assert not result.ok and any("results.json" in p and "SHA-256" in p for p in result.problems)
    manifest = zipfile.ZipFile(path).read("manifest.json").replace(b'"assessment"', b'"assessmenT"')
    _rewrite(path, tampered, "manifest.json", manifest)
    result = verify_report(tampered)
    assert not result.ok and any("signature does not match" in p for p in result.problems)


def test_unsafe_entries_and_non_zips_are_refused(tmp_path: Path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    result = verify_report(evil)
    assert not result.ok and "plain files at its top level" in result.problems[0]
    assert not (tmp_path.parent / "outside.txt").exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a bundle")
    result = verify_report(text)
    assert not result.ok and "neither a report directory nor a signed bundle" in result.problems[0]


def test_an_unsigned_directory_cannot_be_bundled(shared_run: dict[str, Any], tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(shared_run["out"], copy)
    (copy / "manifest.json.sig").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest.json.sig is missing.*render the reports first"):
        bundle_bytes(copy)
    (copy / "manifest.json.sig").write_text("x")
    (copy / "report.pdf").unlink()
    with pytest.raises(FileNotFoundError, match=r"report\.pdf, listed in"):
        bundle_bytes(copy)


def test_cli_bundles_and_verifies(shared_run: dict[str, Any], tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "audit.zip"
    made = runner.invoke(app, ["bundle", str(shared_run["out"]), "-o", str(out)])
    assert made.exit_code == 0, made.output
    assert out.is_file() and "amulet verify-report" in made.output
    checked = runner.invoke(app, ["verify-report", str(out)])
    assert checked.exit_code == 0, checked.output
    assert checked.output.startswith("OK: 4 files match")
    missing = runner.invoke(app, ["bundle", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "render the reports first" in missing.output
    broken = tmp_path / "broken.zip"
    broken.write_bytes(io.BytesIO(out.read_bytes()).getvalue()[:100])
    assert runner.invoke(app, ["verify-report", str(broken)]).exit_code == 1
