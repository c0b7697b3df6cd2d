"""Manifest media types, parsing and validation (OCI image-spec v1.1, Docker schema2).

Bytes are stored and served exactly as pushed; this module only reads them to check
that they are what they claim to be and to find what they reference.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from .digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from .errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"

IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES

# Foreign / non-distributable layers: clients fetch them from the descriptor's `urls`, so a layer
# with `urls` is not required to exist here (its URLs are checked by URLPolicy instead).
FOREIGN_LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    foreign: bool = False                # has `urls`: fetched from elsewhere, not required here
    urls: tuple[str, ...] = ()
    platform: tuple[str, str] | None = None      # an index entry's (os, architecture)


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    blobs: tuple[Descriptor, ...]        # config + layers (image manifests)
    manifests: tuple[Descriptor, ...]    # children (indexes)
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None


def _invalid(detail: str) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", detail)


# Field names fastreg interprets.  Go's encoding/json (Distribution, containerd, docker) matches
# object keys case-insensitively and keeps the last duplicate; a manifest whose meaning depends
# on which parser reads it ("layers" and "Layers", or "layers" twice) could be checked here with
# one set of layers and pulled by a client with another: such manifests are refused.
_MANIFEST_KEYS = {k.lower(): k for k in ("schemaVersion", "mediaType", "config", "layers", "manifests",
                                         "subject", "artifactType", "annotations")}
_DESCRIPTOR_KEYS = {k.lower(): k for k in ("mediaType", "digest", "size", "urls", "annotations",
                                           "artifactType", "platform", "data")}


def _check_keys(obj: dict[str, Any], known: dict[str, str], where: str) -> None:
    for key in obj:
        canonical = known.get(key.lower())
        if canonical is not None and key != canonical:
            raise _invalid(f"{where}key {key!r} differs from {canonical!r} only in case")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _invalid(f"duplicate key {dup!r}")
    return obj


def _check_unambiguous(body: bytes) -> None:
    """Refuse duplicate keys anywhere (RFC 8259: names SHOULD be unique; parsers disagree on
    which one wins).  orjson keeps the last silently, so the stdlib parser looks once more."""
    try:
        json.loads(body, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise _invalid("JSON nested too deeply") from None


def _descriptor(obj: Any, where: str, allow_blake3: bool) -> Descriptor:
    if not isinstance(obj, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    _check_keys(obj, _DESCRIPTOR_KEYS, f"{where}: ")
    mt, dg, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(mt, str) or not mt:
        raise _invalid(f"{where}: mediaType must be a non-empty string")
    if not isinstance(dg, str):
        raise _invalid(f"{where}: digest must be a string")
    try:
        digest = parse_digest(dg, allow_blake3=allow_blake3)
    except (InvalidDigest, UnsupportedDigest) as exc:
        raise _invalid(f"{where}: {exc}") from None
    if type(size) is not int or size < 0:
        raise _invalid(f"{where}: size must be a non-negative integer")
    urls = obj.get("urls")
    if urls is None:
        urls = []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}: urls must be an array of strings")
    plat = obj.get("platform")
    platform = None
    if isinstance(plat, dict):
        platform = (str(plat.get("os", "")), str(plat.get("architecture", "")))
    return Descriptor(mt, digest, size, bool(urls), tuple(urls), platform)


@dataclass(frozen=True, slots=True)
class URLPolicy:
    """Which layer ``urls`` a pushed manifest may carry: Distribution's ``validation`` section.

    URLs must be ``http``/``https`` without a fragment.  Unless ``validation.disabled``, each must
    also match ``manifests.urls.allow`` (unset: no URL is allowed, as in Distribution) and none of
    ``manifests.urls.deny`` (regular expressions, matched anywhere in the URL like Go's
    ``MatchString``)."""

    enabled: bool = True
    allow: re.Pattern[str] | None = None
    deny: re.Pattern[str] | None = None

    @classmethod
    def compile(cls, *, disabled: bool, allow: list[str], deny: list[str]) -> URLPolicy:
        """Raises re.error for an invalid expression."""
        return cls(not disabled, re.compile("|".join(allow)) if allow else None,
                   re.compile("|".join(deny)) if deny else None)

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be pushed, or None."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return "not a URL"
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return "only http and https URLs without a fragment are accepted"
        if not self.enabled:
            return None
        if self.allow is None:
            return "layer URLs are refused unless validation.manifests.urls.allow lists them"
        if not self.allow.search(url):
            return "not allowed by validation.manifests.urls.allow"
        if self.deny is not None and self.deny.search(url):
            return "refused by validation.manifests.urls.deny"
        return None


DISTRIBUTION_URL_POLICY = URLPolicy()       # validation on, no allow list: layer URLs refused


@dataclass(frozen=True, slots=True)
class IndexPolicy:
    """Which children of a pushed index must already exist: Distribution 3's
    ``validation.manifests.indexes`` (``platforms: all`` — every child, the default; ``none``;
    ``list`` — the children whose (os, architecture) is in ``platformlist``)."""

    platforms: str = "all"
    required: frozenset[tuple[str, str]] = frozenset()

    def must_exist(self, child: Descriptor) -> bool:
        if self.platforms == "none":
            return False
        if self.platforms == "list":
            return child.platform is not None and child.platform in self.required
        return True


EVERY_CHILD = IndexPolicy()

DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
# Distribution 2.x's manifest classes (registry/handlers/manifests.go, applyResourcePolicy):
# the class of an image manifest follows its config's media type; indexes have none.
_CLASSES = {DOCKER_MANIFEST: {DOCKER_IMAGE_CONFIG: "image", DOCKER_PLUGIN_CONFIG: "plugin"},
            OCI_MANIFEST: {OCI_IMAGE_CONFIG: "image"}}


@dataclass(frozen=True, slots=True)
class ClassPolicy:
    """``policy.repository.classes`` (Distribution 2.x): when non-empty, an image manifest is
    accepted only if its class (``image`` or ``plugin``, from its config's media type) is listed;
    a config of any other type is refused as an unknown class (403 ``DENIED``, Distribution's
    messages).  Indexes and manifest lists have no class and pass.  An empty list allows all."""

    classes: frozenset[str] = frozenset()

    def check(self, parsed: ParsedManifest) -> None:
        if not self.classes or parsed.media_type not in _CLASSES or not parsed.blobs:
            return
        config_type = parsed.blobs[0].media_type
        cls = _CLASSES[parsed.media_type].get(config_type)
        if cls is None:
            raise RegistryError("DENIED", {"mediaType": config_type},
                                message=f"unknown manifest class for {config_type}")
        if cls not in self.classes:
            raise RegistryError("DENIED", {"class": cls}, message=f"registry does not allow {cls} manifest")


ANY_CLASS = ClassPolicy()


def _content_type(value: str | None) -> str:
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def parse(body: bytes, content_type: str | None, *, allow_blake3: bool = False) -> ParsedManifest:
    """Parse and check a pushed manifest; raise MANIFEST_INVALID with a precise detail."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    _check_keys(doc, _MANIFEST_KEYS, "")
    _check_unambiguous(body)
    sv = doc.get("schemaVersion")
    if type(sv) is not int or sv != 2:         # 2.0 == 2 in Python, but no Go client reads it
        raise _invalid("schemaVersion must be 2 (schema1 manifests are not accepted)")
    ctype = _content_type(content_type)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise _invalid("mediaType must be a string")
    if body_type and ctype and ctype != body_type:
        raise _invalid(f"mediaType {body_type!r} in the body does not match Content-Type {ctype!r}")
    media_type = body_type or ctype
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    if media_type in (DOCKER_MANIFEST, DOCKER_LIST) and not body_type:
        raise _invalid("Docker manifests must carry their mediaType")

    blobs: list[Descriptor] = []
    children: list[Descriptor] = []
    if media_type in IMAGE_TYPES:
        if "manifests" in doc:
            raise _invalid("an image manifest must not have 'manifests'")
        blobs.append(_descriptor(doc.get("config"), "config", allow_blake3))
        layers = doc.get("layers")
        if layers is None and media_type == OCI_MANIFEST:
            layers = []
        if not isinstance(layers, list):
            raise _invalid("layers must be an array")
        for i, layer in enumerate(layers):
            blobs.append(_descriptor(layer, f"layers[{i}]", allow_blake3))
    else:
        if "layers" in doc or "config" in doc:
            raise _invalid("an index must not have 'layers' or 'config'")
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise _invalid("manifests must be an array")
        for i, m in enumerate(manifests):
            children.append(_descriptor(m, f"manifests[{i}]", allow_blake3))

    subject = None
    if doc.get("subject") is not None:
        subject = _descriptor(doc["subject"], "subject", allow_blake3)
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    annotations = doc.get("annotations")
    if annotations is not None and (not isinstance(annotations, dict)
                                    or not all(isinstance(v, str) for v in annotations.values())):
        raise _invalid("annotations must map strings to strings")
    return ParsedManifest(media_type, tuple(blobs), tuple(children), subject, artifact_type, annotations)


def sniff_media_type(body: bytes) -> str:
    """The media type to serve stored bytes with (Distribution derives it the same way)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return OCI_MANIFEST
    if isinstance(doc, dict):
        mt = doc.get("mediaType")
        if isinstance(mt, str) and mt:
            return mt
        if doc.get("schemaVersion") == 1:
            return ("application/vnd.docker.distribution.manifest.v1+prettyjws" if "signatures" in doc
                    else "application/vnd.docker.distribution.manifest.v1+json")
        if "manifests" in doc:
            return OCI_INDEX
    return OCI_MANIFEST


def stored_document(body: bytes) -> dict[str, Any] | None:
    """Stored manifest bytes as the JSON object they hold, leniently, for the tools that read what
    is stored (gc, check, quota): the bytes were checked when pushed, or were written by another
    registry.  None if they do not hold a JSON object."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def referrer_descriptor(body: bytes, digest: Digest) -> dict[str, Any]:
    """The descriptor of a referrer for the referrers API (artifactType falls back to config's mediaType)."""
    doc = orjson.loads(body)
    desc: dict[str, Any] = {"mediaType": doc.get("mediaType") or sniff_media_type(body),
                            "digest": str(digest), "size": len(body)}
    at = doc.get("artifactType")
    if not at and isinstance(doc.get("config"), dict):
        at = doc["config"].get("mediaType")
    if at:
        desc["artifactType"] = at
    if doc.get("annotations"):
        desc["annotations"] = doc["annotations"]
    return desc
