"""No 5xx on any input: each hostile request found by probing the service is a clear 4xx naming the field."""

from __future__ import annotations

import io
import select
import socket
import struct
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testing import census_spec, csv_bytes, npz_bytes, upload_dataset


def _detail(response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, dict), detail
    return detail


def _member_offsets(data: bytes, name: str) -> tuple[int, int, int]:
    """(local header offset, central directory entry offset, data offset) of one zip member."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    local = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[local + 26 : local + 30])
    central = data.index(b"PK\x01\x02")  # the first central directory entry, then the one of this member
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    return local, central, local + 30 + name_len + extra_len


def test_npz_with_a_changed_crc_is_422(client: TestClient, project_headers) -> None:
    data = bytearray(npz_bytes())
    local, central, _ = _member_offsets(bytes(data), "x.npy")
    for crc_at in (local + 14, central + 16):  # the CRC-32 field of the local header and of the directory entry
        data[crc_at : crc_at + 4] = b"\x00\x00\x00\x00"
    detail = _detail(upload_dataset(client, project_headers, bytes(data), "crc.npz"))
    assert detail["field"] in ("file", "x")
    assert "numpy.savez" in detail["message"]


def test_npz_with_corrupt_deflated_bytes_is_422(client: TestClient, project_headers) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    x = rng.normal(size=(200, 6)).astype(np.float32)
    np.savez_compressed(buffer, x=x, y=(x[:, 0] > 0).astype(np.int64))
    data = bytearray(buffer.getvalue())
    _, _, start = _member_offsets(bytes(data), "x.npy")
    data[start + 40 : start + 200] = b"\xff" * 160  # garbage inside the deflate stream
    detail = _detail(upload_dataset(client, project_headers, bytes(data), "deflate.npz"))
    assert detail["field"] in ("file", "x")
    assert "numpy.savez" in detail["message"]


def test_npz_header_claiming_a_huge_shape_is_refused_before_allocating(client: TestClient, project_headers) -> None:
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12, 4)}
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    member.write(np.zeros(16, dtype="<f8").tobytes())  # a few real bytes, nowhere near 29 TiB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", member.getvalue())
        y = io.BytesIO()
        np.save(y, np.zeros(4, dtype=np.int64))
        archive.writestr("y.npy", y.getvalue())
    detail = _detail(upload_dataset(client, project_headers, buffer.getvalue(), "huge.npz"))
    assert detail["field"] == "x"
    assert "(1000000000000, 4)" in detail["message"]


def _corrupt_parquet() -> bytes:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pd.read_csv(io.BytesIO(csv_bytes(400)))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table), sink, compression="snappy")
    data = bytearray(sink.getvalue())
    footer = struct.unpack("<I", data[-8:-4])[0]
    pages_end = len(data) - 8 - footer
    for at in range(8, pages_end - 8, 7):  # every page byte is damaged; the footer (metadata) stays valid
        data[at] ^= 0x5A
    return bytes(data)


def test_parquet_with_corrupt_pages_is_422(client: TestClient, project_headers) -> None:
    import pyarrow.parquet as pq

    data = _corrupt_parquet()
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_rows == 400  # the metadata still reads
    detail = _detail(upload_dataset(client, project_headers, data, "broken.parquet", label="income"))
    assert detail["field"] == "file"
    assert "Parquet" in detail["message"]


def test_deeply_nested_spec_json_is_422(client: TestClient, project_headers) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    files = {"spec": ("model.json", nested, "application/json"), "weights": ("w.safetensors", b"\x00" * 64)}
    detail = _detail(client.post("/models", files=files, headers=project_headers))
    assert detail["field"] == "spec"
    assert "nested" in detail["message"]


def test_huge_seed_is_422_naming_the_bound(client: TestClient, project_headers) -> None:
    response = client.post(
        "/assessments", json={"spec": census_spec(seeds=[1180591620717411303424])}, headers=project_headers
    )
    detail = _detail(response)
    assert response.status_code == 422
    assert detail["field"].startswith("spec.seeds")
    assert str(2**32 - 1) in detail["message"]


@pytest.mark.parametrize("path", ["/datasets", "/models", "/assessments"])
@pytest.mark.parametrize(
    ("query", "name"), [("offset=9223372036854775808", "offset"), ("limit=-1", "limit"), ("limit=0", "limit")]
)
def test_list_pagination_is_bounded(client: TestClient, project_headers, path: str, query: str, name: str) -> None:
    response = client.get(f"{path}?{query}", headers=project_headers)
    assert response.status_code == 422, response.text
    assert name in response.text


@pytest.mark.parametrize("path", ["/datasets", "/models", "/assessments"])
def test_list_limit_is_capped(client: TestClient, project_headers, path: str) -> None:
    assert client.get(f"{path}?limit=500&offset=0", headers=project_headers).status_code == 200
    response = client.get(f"{path}?limit=501", headers=project_headers)
    assert response.status_code == 422
    assert "500" in response.text


@contextmanager
def _live_server(client: TestClient) -> Iterator[int]:
    """The tested app served by uvicorn on a free local port (the TestClient transport reads a whole
    request body before the app sees it, so streaming behaviour needs a real server)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, lifespan="off", log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_chunked_upload_over_the_limit_is_413_as_soon_as_it_passes(
    client: TestClient, project_headers, service_settings
) -> None:
    limit = service_settings.max_upload_bytes
    total = 16 * limit
    chunk = b"1,2\n" * (64 * 1024)
    with _live_server(client) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            "POST /datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: {project_headers['Authorization']}\r\n"
            "Content-Type: multipart/form-data; boundary=amulet-boundary\r\n\r\n"
        ).encode()
        sock.sendall(head)
        part = b'--amulet-boundary\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
        sent = 0
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            while sent < total and not select.select([sock], [], [], 0)[0]:  # stop once an answer is there
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:  # the server closed the connection after answering
            pass
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413", answer[:500]
    assert b"AMULET_MAX_UPLOAD_BYTES" in rest
    assert sent < total // 2, sent  # answered at the limit (plus socket buffers), not after the whole body
