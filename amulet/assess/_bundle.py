"""The signed bundle: one zip with the reports, the results, the signed manifest and the public key.

An auditor downloads one file and checks it offline with ``amulet verify-report <bundle.zip>``. The zip is
deterministic (entries sorted, fixed timestamps and permissions), so the same report directory always gives
the same bytes: two downloads of one assessment are byte-identical and can be compared by their hash.

Contents: every file the manifest lists (``report.html``, ``report.pdf``, ``results.json``, ``junit.xml``),
``manifest.json`` and its Ed25519 signature ``manifest.json.sig``, ``public_key.pem`` (the key the manifest
was signed with) and ``VERIFY.txt`` (how to check it). The key inside the bundle proves integrity only: to
prove *who* signed, compare its key id with the one the signer publishes (``GET /signing-key`` on an Amulet
server, ``amulet verify-report`` prints the id) or pass the trusted key with ``--public-key``.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

from amulet.assess._signing import MANIFEST_NAME, SIGNATURE_NAME

__all__ = ["bundle_bytes", "public_key_pem", "write_bundle"]
#: Zip timestamps are fixed so that equal inputs give equal bytes (the earliest date zip can store).
_EPOCH = (1980, 1, 1, 0, 0, 0)


def public_key_pem(raw_base64: str) -> bytes:
    """The PEM (SubjectPublicKeyInfo) form of a base64 raw Ed25519 public key, as manifests embed it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(raw_base64))
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _verify_text(manifest: dict, names: list[str]) -> str:
    lines = [
        "Amulet signed report bundle",
        "",
        f"Assessment: {manifest.get('assessment', 'unknown')}",
        f"Signed: {manifest.get('created', 'unknown')} with Ed25519 key id {manifest.get('key_id', 'unknown')}",
        "",
        "Check it (needs the amulet package):",
        "    amulet verify-report <this zip> --public-key <the signer's public key, PEM>",
        "This checks the signature of manifest.json and the SHA-256 of every file it lists.",
        "",
        "public_key.pem is the key the manifest was signed with. Verifying against it proves the files were",
        "not changed after signing, not who signed them: compare its key id with the one the signer publishes",
        "(an Amulet server answers GET /signing-key), or pass a key you already trust with --public-key.",
        "",
        "Files:",
        *[f"    {name}" for name in names],
    ]
    return "\n".join(lines) + "\n"


def bundle_bytes(report_dir: str | Path) -> bytes:
    """The bundle of a signed report directory, as zip bytes (deterministic).

    Args:
        report_dir: A directory written by :func:`~amulet.assess.render_reports` (it holds ``manifest.json``,
            ``manifest.json.sig`` and every file the manifest lists).

    Returns:
        The zip file's bytes.

    Raises:
        FileNotFoundError: the manifest, its signature or a listed file is missing (render the reports first).
        ValueError: the manifest is malformed or lists a path outside the directory.
    """
    report_dir = Path(report_dir)
    manifest_path, signature_path = report_dir / MANIFEST_NAME, report_dir / SIGNATURE_NAME
    for path in (manifest_path, signature_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path.name} is missing in {report_dir}: render the reports first (amulet assess ... --out DIR)."
            )
    try:
        manifest = json.loads(manifest_path.read_bytes())
        listed = [str(entry["path"]) for entry in manifest["files"]]
        pem = public_key_pem(str(manifest["public_key"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{manifest_path} is not a valid report manifest: {exc}") from None
    for name in listed:
        if Path(name).is_absolute() or ".." in Path(name).parts or "/" in name:
            raise ValueError(f"{manifest_path} lists {name!r}, a path outside the report directory.")
        if not (report_dir / name).is_file():
            raise FileNotFoundError(f"{name}, listed in {manifest_path}, is missing in {report_dir}.")
    entries = {name: (report_dir / name).read_bytes() for name in listed}
    entries[MANIFEST_NAME] = manifest_path.read_bytes()
    entries[SIGNATURE_NAME] = signature_path.read_bytes()
    entries["public_key.pem"] = pem
    entries["VERIFY.txt"] = _verify_text(manifest, [*sorted(entries), "VERIFY.txt"]).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name])
    return buffer.getvalue()


def write_bundle(report_dir: str | Path, destination: str | Path | None = None) -> Path:
    """Write the bundle of a signed report directory (see :func:`bundle_bytes`) and return its path.

    Args:
        report_dir: The signed report directory.
        destination: The zip to write (default: ``<report_dir>/../<report_dir name>-bundle.zip``).

    Example:
        >>> import tempfile, pathlib
        >>> from amulet.assess import sign_report, verify_report, write_bundle
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "report"
        >>> d.mkdir()
        >>> _ = (d / "results.json").write_text("{}")
        >>> _ = sign_report(d, ["results.json"], key_path=d.parent / "key.pem")
        >>> zip_path = write_bundle(d)
        >>> verify_report(zip_path, key_path=d.parent / "key.pem").ok
        True
    """
    report_dir = Path(report_dir)
    target = Path(destination) if destination is not None else report_dir.parent / f"{report_dir.name}-bundle.zip"
    data = bundle_bytes(report_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target
