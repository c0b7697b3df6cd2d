"""``middleware.storage`` on the S3 driver (moto's S3 server): ``cloudfront`` and ``rewrite``.

There is no CloudFront here, so the test checks what CloudFront would check: the redirect is
to ``baseurl`` + the blob's S3 key, with ``Expires``, ``Key-Pair-Id`` and a ``Signature`` that
the *public* key verifies over the canned policy for exactly that URL and expiry (RSA-SHA1,
CloudFront's base64 alphabet); and the key names the blob's bytes in the bucket.  On another
driver the middleware does nothing (as Distribution, which warns and falls back).

``rewrite`` changes the host of the driver's own presigned URL: the driver talks to moto as
``localhost``, clients are sent to ``127.0.0.1`` — and get the blob's bytes there.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from fastreg.config import ConfigError, load_config
from tests.support.registry_client import push_blob, unique_repo

from .conftest import S3Backend, s3_client
from .services import S3_BUCKET

pytestmark = pytest.mark.e2e
CDN = "https://d111111abcdef8.cloudfront.net/"


def write_key(path: Path, key: Any, fmt: serialization.PrivateFormat) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    return path


def cloudfront(keyfile: Path, **extra: Any) -> dict[str, Any]:
    return {"storage": [{"name": "cloudfront", "options": {
        "baseurl": CDN, "privatekey": str(keyfile), "keypairid": "APKAEXAMPLE", **extra}}]}


def verify(url: str, public_key: Any) -> tuple[str, int]:
    """Check `url` as CloudFront checks a canned-policy signed URL; returns (resource, expires)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, strict_parsing=True)
    assert sorted(query) == ["Expires", "Key-Pair-Id", "Signature"], url
    assert query["Key-Pair-Id"] == ["APKAEXAMPLE"]
    expires = int(query["Expires"][0])
    resource = url.split("?", 1)[0]
    policy = json.dumps({"Statement": [{"Resource": resource, "Condition": {
        "DateLessThan": {"AWS:EpochTime": expires}}}]}, separators=(",", ":")).encode()
    sig = base64.b64decode(query["Signature"][0].translate(str.maketrans("-_~", "+=/")))
    public_key.verify(sig, policy, padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(InvalidSignature):           # the signature covers the expiry
        public_key.verify(sig, policy.replace(str(expires).encode(), str(expires + 1).encode()),
                          padding.PKCS1v15(), hashes.SHA1())
    return resource, expires


def test_cloudfront_signed_redirects_on_s3(fastreg_factory: Any, moto_server: Any, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keyfile = write_key(tmp_path / "cf.pem", key, serialization.PrivateFormat.TraditionalOpenSSL)  # PKCS#1
    root = f"cf-{uuid.uuid4().hex[:8]}"
    store = S3Backend(moto_server)
    srv = fastreg_factory(config={"storage": {"filesystem": None, "s3": store.params(root)},
                                  "middleware": cloudfront(keyfile, duration="90s")})
    repo = unique_repo("cloudfront")
    data = os.urandom(70_000)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        d = push_blob(c, repo, data)
        hex_ = d.split(":")[1]
        s3_key = f"{root}/docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data"
        for method, headers in (("GET", {}), ("HEAD", {}), ("GET", {"Range": "bytes=0-9"})):
            before = int(time.time())
            r = c.request(method, f"/v2/{repo}/blobs/{d}", headers=headers)
            after = int(time.time()) + 1
            assert r.status_code == 307, (method, r.status_code, r.text, srv.log())
            resource, expires = verify(r.headers["Location"], key.public_key())
            assert resource == CDN + s3_key
            assert before + 90 <= expires <= after + 90
        assert c.get(f"/v2/{repo}/blobs/sha256:{'0' * 64}").status_code == 404

    async def fetch() -> bytes:          # what CloudFront's origin (the bucket) holds at that key
        async with s3_client(moto_server.url) as s3:
            obj = await s3.get_object(Bucket=S3_BUCKET, Key=s3_key)
            async with obj["Body"] as body:
                return bytes(await body.read())

    assert asyncio.run(fetch()) == data


def test_cloudfront_does_nothing_on_other_drivers(fastreg_factory: Any, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keyfile = write_key(tmp_path / "cf.pem", key, serialization.PrivateFormat.PKCS8)
    srv = fastreg_factory(config={"middleware": cloudfront(keyfile)})
    repo = unique_repo("cloudfront-fs")
    data = os.urandom(3000)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        d = push_blob(c, repo, data)
        r = c.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 200 and r.content == data
    assert "only works with the s3 driver" in srv.log()


@pytest.mark.parametrize(("options", "message"), [
    ({"privatekey": None}, "no privatekey provided"),
    ({"keypairid": None}, "no keypairid provided"),
    ({"ipfilteredby": "aws"}, "ipfilteredby: aws is not implemented"),
    ({"ipfilteredby": "awsregion", "awsregion": "us-east-1"}, "ipfilteredby: awsregion is not implemented"),
    ({"ipfilteredby": "sometimes"}, "none|aws|awsregion"),
    ({"duration": "soon"}, "invalid duration"),
    ({"privatekey": "EC"}, "CloudFront signs with RSA"),
    ({"privatekey": "/nonexistent/key.pem"}, "failed to read privatekey file"),
    ({"bogus": 1}, "unknown options"),
])
def test_cloudfront_config_errors(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    rsa_file = write_key(tmp_path / "rsa.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048),
                         serialization.PrivateFormat.PKCS8)
    ec_file = write_key(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()),
                        serialization.PrivateFormat.PKCS8)
    opts: dict[str, Any] = {"baseurl": CDN, "privatekey": str(rsa_file), "keypairid": "K", **options}
    if opts.get("privatekey") == "EC":
        opts["privatekey"] = str(ec_file)
    opts = {k: v for k, v in opts.items() if v is not None}
    lines = ["version: 0.1", "storage: inmemory", "middleware:", "  storage:", "    - name: cloudfront",
             "      options: " + json.dumps(opts)]
    path = tmp_path / "config.yml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="middleware.storage.0: unable to configure storage middleware "
                                          r"\(cloudfront\): .*" + message.replace("|", r"\|")):
        load_config(path, env={})


def test_rewrite_changes_the_presigned_url(fastreg_factory: Any, moto_server: Any) -> None:
    root = f"rw-{uuid.uuid4().hex[:8]}"
    store = S3Backend(moto_server)
    inside = moto_server.url.replace("127.0.0.1", "localhost")
    outside = urlsplit(moto_server.url).netloc
    srv = fastreg_factory(config={"storage": {"filesystem": None, "s3": store.params(root, endpoint=inside)},
                                  "middleware": {"storage": [{"name": "rewrite", "options": {"host": outside}}]}})
    repo = unique_repo("rewrite")
    data = os.urandom(40_000)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        d = push_blob(c, repo, data)
        r = c.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 307, (r.status_code, r.text, srv.log())
        loc = urlsplit(r.headers["Location"])
        assert loc.netloc == outside and loc.path.startswith(f"/{S3_BUCKET}/{root}/docker/registry/v2/blobs/")
        assert "X-Amz-Signature=" in loc.query
        assert httpx.get(r.headers["Location"], timeout=30.0).content == data
        # which reads are redirected stays the driver's: HEAD and ranges are answered here
        assert c.head(f"/v2/{repo}/blobs/{d}").status_code == 200
        part = c.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=5-9"})
        assert part.status_code == 206 and part.content == data[5:10]


def test_rewrite_unit() -> None:
    from fastreg.storage.driver.wrappers.middleware import Rewrite, parse
    rw = parse("rewrite", {"scheme": "https", "host": "cdn.azurefd.net", "trimpathprefix": "/container"})
    assert rw == Rewrite("https", "cdn.azurefd.net", "/container")
    assert rw.apply("http://acct.blob.core.windows.net/container/docker/x/data?sv=1&sig=a%2Bb") == \
        "https://cdn.azurefd.net/docker/x/data?sv=1&sig=a%2Bb"
    assert Rewrite().apply("http://h/p?q=1") == "http://h/p?q=1"
    with pytest.raises(ValueError, match="host must be a string"):
        parse("rewrite", {"host": 5})
