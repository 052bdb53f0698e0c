"""Signed report manifests: SHA-256 of every report file, signed with Ed25519.

``manifest.json`` lists each report file with its size and SHA-256; ``manifest.json.sig`` holds the
base64 Ed25519 signature over the exact bytes of ``manifest.json``. The signing key is the PEM file at
``Settings.signing_key_path`` (created with mode 0600 when missing). :func:`verify_report` checks the
signature and every file's hash; by default it trusts the local signing key's public half when that key
exists, else only the key embedded in the manifest (which proves integrity, not origin).

Example:
    >>> import tempfile, pathlib
    >>> from amulet.assess import sign_report, verify_report
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "report.json").write_text("{}")
    >>> key = d.parent / (d.name + "-key.pem")
    >>> _ = sign_report(d, ["report.json"], key_path=key)
    >>> verify_report(d, key_path=key).ok
    True
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from amulet.assess._cache import file_sha256
from amulet.settings import get_settings

__all__ = ["MANIFEST_NAME", "SIGNATURE_NAME", "VerifyResult", "load_signing_key", "sign_report", "verify_report"]

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
MANIFEST_FORMAT = "amulet-report-manifest/1"
#: Files a signed bundle (:mod:`amulet.assess._bundle`) adds next to the signed ones, not listed in the manifest.
BUNDLE_EXTRAS = ("public_key.pem", "VERIFY.txt")
#: The most a bundle may unpack to when verified (a zip bomb is refused, not extracted).
MAX_BUNDLE_BYTES = 2 * 1024**3


def _default_key_path() -> Path:
    return get_settings().resolved_signing_key_path


def load_signing_key(key_path: str | Path | None = None, *, create: bool = True) -> Any:
    """The Ed25519 private key at ``key_path`` (default: the settings' path), created when missing.

    Raises:
        FileNotFoundError: no key and ``create`` is False.
        ValueError: the file is not an Ed25519 private key in PEM.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(key_path) if key_path is not None else _default_key_path()
    if not path.is_file():
        if not create:
            raise FileNotFoundError(f"No report-signing key at {path}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, path)
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"The report-signing key {path} is not an Ed25519 private key.")
    return loaded


def _public_raw(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_report(
    report_dir: str | Path,
    files: Sequence[str],
    *,
    key_path: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``manifest.json`` for ``files`` (relative to ``report_dir``) and its Ed25519 signature.

    Returns:
        (manifest path, signature path).
    """
    report_dir = Path(report_dir)
    key = load_signing_key(key_path)
    public = _public_raw(key.public_key())
    manifest = {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(public).decode(),
        "key_id": hashlib.sha256(public).hexdigest()[:16],
        "files": [
            {"path": name, "bytes": (report_dir / name).stat().st_size, "sha256": file_sha256(report_dir / name)}
            for name in sorted(files)
        ],
        **(extra or {}),
    }
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    manifest_path = report_dir / MANIFEST_NAME
    manifest_path.write_bytes(data)
    signature_path = report_dir / SIGNATURE_NAME
    signature_path.write_text(base64.b64encode(key.sign(data)).decode() + "\n", encoding="ascii")
    return manifest_path, signature_path


@dataclass
class VerifyResult:
    """Outcome of :func:`verify_report`: ``ok`` and the problems found (empty when ok)."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_id: str = ""
    trusted_key: str = ""
    files: list[str] = field(default_factory=list)


def _load_public_key(source: str | Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    data = Path(source).read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{source} is not an Ed25519 key.")
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"{source} is not an Ed25519 public key.")
    return public


def verify_report(
    report_dir: str | Path, *, public_key: str | Path | None = None, key_path: str | Path | None = None
) -> VerifyResult:
    """Check a report directory's (or a signed bundle's) manifest: the signature, then every listed file's
    size and SHA-256.

    Args:
        report_dir: Directory holding ``manifest.json`` and ``manifest.json.sig``, or a signed bundle zip
            (:func:`~amulet.assess.write_bundle`), checked after unpacking it into a temporary directory.
        public_key: PEM file of the trusted Ed25519 public (or private) key. Default: the local signing key
            at ``key_path``/the settings' path when it exists, else the key embedded in the manifest.
        key_path: Private signing key whose public half to trust (default: the settings' path).

    Returns:
        A :class:`VerifyResult`; ``ok`` is False when anything does not match.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    report_dir = Path(report_dir)
    if report_dir.is_file():
        return _verify_bundle(report_dir, public_key=public_key, key_path=key_path)
    result = VerifyResult(ok=False)
    manifest_path, signature_path = report_dir / MANIFEST_NAME, report_dir / SIGNATURE_NAME
    if not manifest_path.is_file() or not signature_path.is_file():
        result.problems.append(f"{MANIFEST_NAME} or {SIGNATURE_NAME} is missing in {report_dir}")
        return result
    data = manifest_path.read_bytes()
    try:
        manifest = json.loads(data)
        signature = base64.b64decode(signature_path.read_text(encoding="ascii").strip(), validate=True)
        embedded = Ed25519PublicKey.from_public_bytes(base64.b64decode(manifest["public_key"]))
    except Exception as exc:
        result.problems.append(f"the manifest or signature is malformed: {exc}")
        return result
    result.key_id = str(manifest.get("key_id", ""))
    if public_key is not None:
        trusted = _load_public_key(public_key)
        result.trusted_key = f"given key {public_key}"
    else:
        local = Path(key_path) if key_path is not None else _default_key_path()
        if local.is_file():
            trusted = _load_public_key(local)
            result.trusted_key = f"local signing key {local}"
        else:
            trusted = embedded
            result.trusted_key = "key embedded in the manifest"
            result.warnings.append("no trusted key given: the signature proves integrity, not who signed the report")
    if _public_raw(trusted) != _public_raw(embedded):
        result.problems.append("the manifest was signed with a different key than the trusted one")
    try:
        trusted.verify(signature, data)
    except InvalidSignature:
        result.problems.append("the signature does not match manifest.json (the manifest was altered or re-signed)")
    for entry in manifest.get("files", []):
        name = str(entry.get("path", ""))
        path = report_dir / name
        result.files.append(name)
        if Path(name).is_absolute() or ".." in Path(name).parts:
            result.problems.append(f"{name}: path outside the report directory")
        elif not path.is_file():
            result.problems.append(f"{name}: missing")
        elif path.stat().st_size != entry.get("bytes") or file_sha256(path) != entry.get("sha256"):
            result.problems.append(f"{name}: SHA-256 does not match the manifest (the file was modified)")
    listed = set(result.files) | {MANIFEST_NAME, SIGNATURE_NAME, *BUNDLE_EXTRAS}
    for path in sorted(report_dir.iterdir()):
        if path.is_file() and path.name not in listed:
            result.warnings.append(f"{path.name}: not covered by the manifest")
    result.ok = not result.problems
    return result


def _verify_bundle(bundle: Path, *, public_key: str | Path | None, key_path: str | Path | None) -> VerifyResult:
    """Unpack a signed bundle into a temporary directory (refusing unsafe entries) and verify that."""
    import tempfile
    import zipfile

    result = VerifyResult(ok=False)
    if not zipfile.is_zipfile(bundle):
        result.problems.append(f"{bundle} is neither a report directory nor a signed bundle (zip)")
        return result
    with zipfile.ZipFile(bundle) as zf, tempfile.TemporaryDirectory(prefix="amulet-bundle-") as tmp:
        members = zf.infolist()
        if sum(m.file_size for m in members) > MAX_BUNDLE_BYTES:
            result.problems.append(f"{bundle} unpacks to more than {MAX_BUNDLE_BYTES} bytes; refused")
            return result
        for member in members:
            name = member.filename
            if member.is_dir() or "/" in name or "\\" in name or name in ("", ".", ".."):
                result.problems.append(f"{name!r}: a bundle holds only plain files at its top level")
                return result
            (Path(tmp) / name).write_bytes(zf.read(member))
        return verify_report(tmp, public_key=public_key, key_path=key_path)
