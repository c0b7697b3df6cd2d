"""Storage middleware: Distribution's ``middleware.storage`` list, wrappers around the driver
that send blob reads to another server.

Each entry is ``{name, options, disabled}``; entries wrap the driver in order.  The names are
Distribution's (``registry/storage/driver/middleware/*``):

* ``redirect`` (``baseurl``, required): every blob ``GET`` and ``HEAD`` — with or without a
  ``Range`` — is answered ``307 Temporary Redirect`` to ``baseurl`` joined with the blob's
  storage path, e.g. ``https://cdn.example/docker/registry/v2/blobs/sha256/ab/<hex>/data``.  The
  path is the driver's path (without the driver's own ``rootdirectory``), so ``baseurl`` must
  serve the driver's root.  A path in ``baseurl`` is kept (Distribution 3; 2.8 dropped it);
  a ``baseurl`` without a scheme gets ``https://`` (2.8; Distribution 3 refuses it).
* ``cloudfront`` (``baseurl``, ``privatekey``, ``keypairid``, required; ``duration``, default
  20m): on the S3 driver, blob reads are redirected to ``baseurl`` + the object's S3 key, signed
  as a CloudFront *canned policy* URL (``Expires``, ``Signature``, ``Key-Pair-Id``: RSA-SHA1
  over ``{"Statement":[{"Resource":URL,"Condition":{"DateLessThan":{"AWS:EpochTime":T}}}]}``,
  base64 with ``+=/`` → ``-_~``), as aws-sdk-go's ``sign.URLSigner`` does for Distribution.  On
  any other driver it does nothing (Distribution logs a warning and falls back the same way).
  ``ipfilteredby: aws | awsregion`` (send clients inside AWS straight to S3, from AWS's
  published IP ranges) is not implemented: the config is refused; ``none`` is the default.

* ``rewrite`` (Distribution 3; ``scheme``, ``host``, ``trimpathprefix``, all optional): the URL
  the driver itself redirects to (an S3 presigned URL, an Azure SAS URL) gets its scheme and host
  replaced and the prefix trimmed from its path — e.g. to send Azure reads through Azure Front
  Door.  Which reads are redirected stays the driver's (fastreg's object stores: full GETs).  A
  driver without URLs of its own (filesystem) keeps serving blobs (Distribution would redirect to
  the bare rewritten host).

As in Distribution, redirects only happen while ``storage.redirect.disable`` is false, the blob
must exist in the repository first (else 404), and ``If-None-Match`` is answered by fastreg
(304) before any redirect.  Unknown names are a config error (Distribution fails to start).
"""
from __future__ import annotations

import base64
import json
import logging
import posixpath
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ....durations import parse_duration
from ..base import DriverWrapper, StorageDriver, innermost

log = logging.getLogger("fastreg.storage.middleware")

NAMES = ("redirect", "cloudfront", "rewrite")
CLOUDFRONT_DURATION = 20 * 60.0          # Distribution's default signed-URL lifetime
_CF_OPTIONS = {"baseurl", "privatekey", "keypairid", "duration", "ipfilteredby", "awsregion",
               "updatefrequency", "updatefrenquency", "iprangesurl"}
_B64_CF = str.maketrans("+=/", "-_~")   # CloudFront's URL-safe base64 alphabet


@dataclass(frozen=True)
class Redirect:
    scheme: str
    host: str
    base_path: str

    def url(self, path: str) -> str:
        if self.base_path:
            path = posixpath.join(self.base_path, path.lstrip("/"))
        return f"{self.scheme}://{self.host}{quote(path, safe='/')}"


@dataclass(frozen=True)
class CloudFront:
    baseurl: str           # ends with "/"
    key: Any               # cryptography RSAPrivateKey
    keypairid: str
    duration: float        # seconds

    def sign(self, object_key: str, now: float | None = None) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        resource = self.baseurl + quote(object_key, safe="/")
        expires = int((time.time() if now is None else now) + self.duration)
        policy = json.dumps({"Statement": [{"Resource": resource, "Condition": {
            "DateLessThan": {"AWS:EpochTime": expires}}}]}, separators=(",", ":"))
        signature = self.key.sign(policy.encode(), padding.PKCS1v15(), hashes.SHA1())  # CloudFront's algorithm
        sig = base64.b64encode(signature).decode().translate(_B64_CF)
        sep = "&" if "?" in resource else "?"
        return f"{resource}{sep}Expires={expires}&Key-Pair-Id={quote(self.keypairid, safe='')}&Signature={sig}"


@dataclass(frozen=True)
class Rewrite:
    scheme: str = ""
    host: str = ""
    trimpathprefix: str = ""

    def apply(self, url: str) -> str:
        u = urlsplit(url)
        path = u.path
        if self.trimpathprefix and path.startswith(self.trimpathprefix):
            path = path[len(self.trimpathprefix):]
        return urlunsplit((self.scheme or u.scheme, self.host or u.netloc, path, u.query, u.fragment))


Spec = Redirect | CloudFront | Rewrite


def _text(options: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    v = options.get(key)
    if v is None:
        if required:
            raise ValueError(f"no {key} provided")
        return ""
    if not isinstance(v, str):
        raise ValueError(f"{key} must be a string")  # noqa: TRY004 - a config error
    return v


def parse(name: str, options: Mapping[str, Any]) -> Spec:
    """One ``middleware.storage`` entry → its spec; ValueError names what is wrong."""
    if name == "redirect":
        unknown = set(options) - {"baseurl"}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)} (redirect takes baseurl)")
        b = _text(options, "baseurl")
        if "://" not in b:
            b = "https://" + b
        u = urlsplit(b)
        if not u.scheme:
            raise ValueError("no scheme specified for redirect baseurl")
        if not u.netloc:
            raise ValueError("no host specified for redirect baseurl")
        if u.query or u.fragment:
            raise ValueError("redirect baseurl must not have a query or fragment")
        return Redirect(u.scheme, u.netloc, u.path)
    if name == "cloudfront":
        unknown = set(options) - _CF_OPTIONS
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; valid: {', '.join(sorted(_CF_OPTIONS))}")
        base = _text(options, "baseurl")
        if "://" not in base:
            base = "https://" + base
        if not base.endswith("/"):
            base += "/"
        if not urlsplit(base).netloc:
            raise ValueError(f"invalid baseurl {base!r}")
        keypairid = _text(options, "keypairid")
        key = _load_rsa_key(_text(options, "privatekey"))
        duration = CLOUDFRONT_DURATION
        d = options.get("duration")
        if d is not None:
            try:
                duration = d / 1e9 if isinstance(d, int) and not isinstance(d, bool) else parse_duration(str(d))
            except ValueError as exc:
                raise ValueError(f"invalid duration: {exc}") from None
            if duration <= 0:
                raise ValueError("duration must be positive")
        filt = str(options.get("ipfilteredby") or "none").strip().lower()
        if filt in ("aws", "awsregion"):
            raise ValueError(f"ipfilteredby: {filt} is not implemented by fastreg (it sends clients inside "
                             "AWS straight to S3, from AWS's published IP ranges); use none")
        if filt != "none":
            raise ValueError("ipfilteredby only allows a string the following value: none|aws|awsregion")
        return CloudFront(base, key, keypairid, duration)
    if name == "rewrite":
        unknown = set(options) - {"scheme", "host", "trimpathprefix"}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)} (rewrite takes scheme, host, trimpathprefix)")
        return Rewrite(_text(options, "scheme", required=False), _text(options, "host", required=False),
                       _text(options, "trimpathprefix", required=False))
    raise ValueError(f"no storage middleware registered with name: {name} (fastreg has {', '.join(NAMES)})")


def _load_rsa_key(path: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise ValueError(f"failed to read privatekey file: {exc}") from None
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"privatekey {path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(  # noqa: TRY004 - a config error
            f"privatekey {path}: CloudFront signs with RSA; this is a {type(key).__name__}")
    return key


def specs(entries: Any) -> list[Spec]:
    """The enabled entries of ``middleware.storage`` (config ``Middleware`` structs), parsed."""
    out = []
    for mw in entries or []:
        if not mw.disabled:
            out.append(parse(mw.name, mw.options))
    return out


def wrap(driver: StorageDriver, entries: Any, *, redirect: bool) -> StorageDriver:
    """Apply ``middleware.storage`` to `driver` in order (`redirect`: not storage.redirect.disable)."""
    parsed = specs(entries)
    if not parsed:
        return driver
    if not redirect:
        log.warning("middleware.storage has no effect: storage.redirect.disable is true, so blobs are "
                    "served by fastreg (as in Distribution)")
        return driver
    for spec in parsed:
        if isinstance(spec, CloudFront) and innermost(driver).name != "s3":
            log.warning("the cloudfront storage middleware only works with the s3 driver; ignored for %s",
                        driver.name)
            continue
        driver = RedirectingDriver(driver, spec)
    return driver


class RedirectingDriver(DriverWrapper):
    """`inner` with ``redirect_url`` answered by a middleware spec; everything else passes through.

    ``redirects_every_read``: blob HEADs and ranged GETs are redirected too (Distribution's
    blob server redirects before looking at the method or a Range); ``rewrite`` keeps the inner
    driver's choice."""

    def __init__(self, inner: StorageDriver, spec: Spec) -> None:
        super().__init__(inner)
        self.spec = spec
        if not isinstance(spec, Rewrite):
            self.capabilities = replace(inner.capabilities, redirects_every_read=True)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if method not in ("GET", "HEAD"):
            return None
        if isinstance(self.spec, Redirect):
            return self.spec.url(path)
        if isinstance(self.spec, Rewrite):
            url = await self.inner.redirect_url(path, method)
            return None if url is None else self.spec.apply(url)
        backend = innermost(self.inner)                  # cloudfront: the s3 driver's object key
        return self.spec.sign(backend.key(path))  # type: ignore[attr-defined]
