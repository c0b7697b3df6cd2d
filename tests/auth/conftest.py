"""Auth fixtures: a private CA with server, client and token-signing certificates (made with
fastreg.auth.pki; checked by independent TLS stacks: Go in skopeo/podman/Distribution, OpenSSL
in httpx), htpasswd files, and the test image.

``pki.certs_dir`` is laid out as containers/image wants a ``--cert-dir``: ``ca.crt`` (trusted
CA) and ``client.cert`` + ``client.key`` (a client certificate).
"""
from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fastreg.auth import pki
from tests.interop.images import ImageLayout, build_oci_image


@dataclass(frozen=True)
class PKI:
    dir: Path
    ca: pki.Issued
    ca_pem: Path
    server_pem: Path
    server_key: Path
    client_pem: Path
    client_key: Path
    token_pem: Path
    token_key: Path
    certs_dir: Path          # ca.crt only: server verification
    client_certs_dir: Path   # ca.crt + client.cert/client.key

    def ssl_context(self, client: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        if client:
            ctx.load_cert_chain(str(self.client_pem), str(self.client_key))
        return ctx


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca()
    ca.write(d / "ca.pem", d / "ca.key")
    pki.issue(ca, "fastreg test server", hosts=["127.0.0.1", "localhost"]).write(d / "server.pem", d / "server.key")
    client = pki.issue(ca, "fastreg test client", client=True)
    client.write(d / "client.pem", d / "client.key")
    pki.issue(ca, "fastreg test token signer").write(d / "token.pem", d / "token.key")
    certs = d / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.cert_pem())
    ccerts = d / "client-certs"
    ccerts.mkdir()
    (ccerts / "ca.crt").write_bytes(ca.cert_pem())
    client.write(ccerts / "client.cert", ccerts / "client.key")
    return PKI(d, ca, d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
               d / "token.pem", d / "token.key", certs, ccerts)


@pytest.fixture(scope="session")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> ImageLayout:
    return build_oci_image(tmp_path_factory.mktemp("images") / "oci", tag="latest")


@pytest.fixture(scope="session")
def podman_root() -> Iterator[list[str]]:
    """podman's global options: private vfs storage in a short /tmp path (podman refuses a
    runroot longer than 50 characters), no events journal, cgroupfs; removed afterwards."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (apt-get install podman)")
    base = Path(tempfile.mkdtemp(prefix="fr-pm-"))
    (base / "tmp").mkdir()
    yield ["podman", "--storage-driver", "vfs", "--root", str(base / "root"), "--runroot", str(base / "run"),
           "--tmpdir", str(base / "tmp"), "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
    shutil.rmtree(base, ignore_errors=True)
