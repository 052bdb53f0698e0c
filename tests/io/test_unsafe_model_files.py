"""Pickled model files are refused without running them: the payload's marker file must never appear."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from amulet.exceptions import UnsafeModelFileError
from amulet.io import detect_weights_format, load_model, read_weights
from amulet.models import LinearNet

SPEC = {"architecture": "linearnet", "config": {"hidden_layer_sizes": [4]}, "input_shape": [3], "num_classes": 2}


class Payload:
    """Unpickling this runs code that creates ``marker`` (a stand-in for any attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _state() -> dict[str, torch.Tensor]:
    return LinearNet(3, 2, hidden_layer_sizes=[4]).state_dict()


def test_the_payload_is_live(tmp_path):
    """Control: the payloads used below do run code when unpickled the unsafe way."""
    marker = tmp_path / "raw.marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "pwned"
    marker_zip = tmp_path / "zip.marker"
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1), "x": Payload(marker_zip)}, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=False)
    assert marker_zip.exists()


def _malicious_files(directory: Path, marker: Path) -> dict[str, Path]:
    files = {}
    for protocol in (2, 4, 5):
        files[f"pickle-p{protocol}"] = directory / f"p{protocol}.safetensors"  # the name must not matter
        files[f"pickle-p{protocol}"].write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
    files["state-dict-pickle"] = directory / "state.pkl"
    files["state-dict-pickle"].write_bytes(pickle.dumps({**_state(), "extra": Payload(marker)}))
    files["torch-zip-object"] = directory / "object.pt"
    torch.save(Payload(marker), files["torch-zip-object"])
    files["torch-zip-state-dict"] = directory / "state.pt"
    torch.save({**_state(), "extra": Payload(marker)}, files["torch-zip-state-dict"])
    files["torch-legacy"] = directory / "legacy.pt"
    torch.save({**_state(), "extra": Payload(marker)}, files["torch-legacy"], _use_new_zipfile_serialization=False)
    return files


def test_malicious_files_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "marker"
    files = _malicious_files(tmp_path, marker)
    for name, path in files.items():
        for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
            with pytest.raises(UnsafeModelFileError, match="export-model"):
                load_model(SPEC, source)
            with pytest.raises(UnsafeModelFileError):
                read_weights(source)
            assert not marker.exists(), f"{name} ran code"
    assert not marker.exists()


def test_plain_pickled_state_dict_is_refused_too(tmp_path):
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(_state()))
    with pytest.raises(UnsafeModelFileError, match=r"pickle stream \(protocol \d\).*never unpickles"):
        read_weights(path)


def test_unknown_formats(tmp_path):
    for data in (b"", b"hello", b"\x00" * 32, b"ONNX" + bytes(60)):
        with pytest.raises(UnsafeModelFileError, match="neither safetensors nor a torch zip checkpoint"):
            read_weights(data)


def test_detect_weights_format():
    from safetensors.torch import save

    data = save({"w": torch.zeros(2)})
    assert detect_weights_format(data[:64], len(data)) == "safetensors"
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)
    assert detect_weights_format(buffer.getvalue()[:64], len(buffer.getvalue())) == "torch-zip"
    assert detect_weights_format(pickle.dumps({"a": 1}, protocol=4)[:64], 20) == "pickle"
    # A huge header length cannot be safetensors, whatever follows.
    assert detect_weights_format((10**12).to_bytes(8, "little") + b"{}", 100) == "unknown"
