"""broker.tls = true: the bridge verifies the broker against the system CA store."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess, free_port
from bridge.app import bootstrap
from bridge.config import Settings
from bridge.testing import unique_topic
from tests.integration.conftest import TIMEOUT, char, open_probe

pytestmark = pytest.mark.mosquitto


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "s.key", "s.csr", "s.pem")
    )
    ext = folder / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=OpenSPC test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    for path in (ca, key, cert):
        path.chmod(0o644)  # mosquitto drops to its own user
    return ca, cert, key


@pytest.fixture
def certificates() -> Iterator[tuple[Path, Path, Path]]:
    """CA, certificate and key in a folder the broker's own user can read (not tmp_path,
    whose parents are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="openspc-tls-"))
    folder.chmod(0o755)
    try:
        yield make_certificates(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_tls_to_a_broker_the_system_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certificates
    plain, secure = free_port(), free_port()
    data = tmp_path / "broker" / "data"
    config = "\n".join(
        [
            "per_listener_settings false",
            "allow_anonymous true",
            f"persistence true\npersistence_location {data}/",
            "log_dest stderr",
            f"listener {plain} 127.0.0.1",
            f"listener {secure} 127.0.0.1",
            f"cafile {ca}\ncertfile {cert}\nkeyfile {key}",
        ]
    )
    # the "system" CA store of this test: OpenSSL's default paths honour SSL_CERT_FILE
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    assert ssl.get_default_verify_paths().cafile == str(ca)
    prefix = unique_topic("openspc")
    with MosquittoProcess(port=plain, config=config, workdir=tmp_path / "broker") as broker:
        settings = Settings(
            broker={"host": "127.0.0.1", "port": secure, "client_id": "tls-bridge", "tls": True},
            database={"url": f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"},
            bridge={"topic_prefix": prefix},
            characteristic=[char(1)],
        )
        app = await bootstrap(settings)
        await app.start(connect_timeout=TIMEOUT)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        try:
            async with open_probe(broker, f"{prefix}/#") as probe:  # plain listener
                await probe.publish(f"{prefix}/char/1/reading", "4.25")
                [sample] = await probe.wait_for(f"{prefix}/char/1/sample")
                assert sample["payload"]["value"] == 4.25
        finally:
            stop.set()
            await asyncio.wait_for(task, TIMEOUT)
