"""Build container images on disk, without a daemon, as OCI image layout directories.

An OCI image layout (image-spec `image-layout.md`) is a directory::

    <layout>/oci-layout            {"imageLayoutVersion": "1.0.0"}
    <layout>/index.json            an image index whose entries carry org.opencontainers.image.ref.name
    <layout>/blobs/sha256/<hex>    every blob and manifest, named by its digest

`skopeo copy oci:<layout>:<tag> docker://...` reads it directly.  Everything here is
deterministic (fixed tar headers, gzip mtime 0, seeded pseudo-random payloads), so the same call
always yields the same digests, and every test can predict exactly what a registry must hand back.

Two variants of one multi-arch image (linux/amd64 + linux/arm64, one layer shared by both):

* ``build_oci_image``:    OCI image index -> OCI image manifests, OCI config, tar+gzip layers.
* ``build_docker_image``: Docker manifest list -> Docker schema2 manifests, Docker config and
  layer media types (the same layer bytes).  skopeo's OCI-layout reader (containers/image) only
  accepts OCI media types in index.json, so this variant is written in skopeo's ``dir:`` format
  instead (``dir:<path>``; also daemonless)::

      <dir>/version                 "Directory Transport Version: 1.1\n"
      <dir>/manifest.json           the top-level manifest (here the manifest list)
      <dir>/<hex>.manifest.json     each instance manifest of a list, named by its digest
      <dir>/<hex>                   every config and layer blob
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

REF_NAME = "org.opencontainers.image.ref.name"
PLATFORMS = (("linux", "amd64", None), ("linux", "arm64", "v8"))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact, key-sorted JSON: the bytes that get hashed are the bytes that get pushed."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Layer:
    blob: bytes       # the gzip'd tar, as stored and pushed
    diff_id: str      # digest of the uncompressed tar (rootfs.diff_ids)

    @property
    def digest(self) -> str:
        return sha256(self.blob)


@dataclass
class PlatformImage:
    os: str
    architecture: str
    variant: str | None
    manifest_digest: str
    manifest_size: int
    config_digest: str
    layer_digests: list[str]

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


@dataclass
class ImageLayout:
    """An image layout on disk and everything a test needs to check a round trip."""

    path: Path
    tag: str
    transport: str                  # "oci" (OCI image layout) or "dir" (skopeo's dir: format)
    index_digest: str               # digest of the top-level index / manifest list
    index_media_type: str
    manifest_media_type: str
    images: list[PlatformImage]
    blobs: dict[str, int] = field(default_factory=dict)   # every blob and manifest: digest -> size

    @property
    def ref(self) -> str:
        """The skopeo source reference: `oci:<path>:<tag>` or `dir:<path>`."""
        return f"oci:{self.path}:{self.tag}" if self.transport == "oci" else f"dir:{self.path}"

    @property
    def manifest_digests(self) -> set[str]:
        return {self.index_digest, *(i.manifest_digest for i in self.images)}

    @property
    def layer_digests(self) -> set[str]:
        return {d for i in self.images for d in i.layer_digests}

    @property
    def config_digests(self) -> set[str]:
        return {i.config_digest for i in self.images}

    def blob_bytes(self, digest: str) -> bytes:
        return read_image_dir(self.path, self.transport)[digest]

    def platform(self, arch: str) -> PlatformImage:
        return next(i for i in self.images if i.architecture == arch)


# --- layers -----------------------------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    """A deterministic tar: sorted entries, fixed owner/mode/mtime, implicit parent directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def make_layer(files: dict[str, bytes]) -> Layer:
    raw = _tar(files)
    return Layer(blob=_gzip(raw), diff_id=sha256(raw))


def _noise(seed: str, size: int) -> bytes:
    """Incompressible, reproducible bytes (so a layer's gzip size is about `size`)."""
    return random.Random(seed).randbytes(size)


def default_layers(seed: str = "fastreg") -> tuple[Layer, dict[str, list[Layer]]]:
    """One base layer shared by every platform, plus two layers of its own per platform.

    Sizes are chosen so that some blobs span several of granian's ~400 KB body frames and
    skopeo's upload chunks (the shared base is ~1.5 MB, each arch's "binary" ~600 KB).
    """
    base = make_layer({
        "etc/os-release": f'NAME="fastreg-test"\nID=fastreg\nVERSION_ID="{seed}"\n'.encode(),
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
        "usr/share/fastreg/base.bin": _noise(seed + "/base", 1_500_000),
    })
    per_arch: dict[str, list[Layer]] = {}
    for _os, arch, _variant in PLATFORMS:
        per_arch[arch] = [
            make_layer({
                f"usr/bin/hello-{arch}": _noise(f"{seed}/{arch}/bin", 600_000),
                "usr/lib/fastreg/ARCH": arch.encode() + b"\n",
            }),
            make_layer({
                "etc/motd": f"hello from {arch} ({seed})\n".encode() * 50,
                f"var/lib/fastreg/{arch}.txt": b"small\n",
            }),
        ]
    return base, per_arch


# --- manifests ----------------------------------------------------------------------------------


def _config(os_: str, arch: str, variant: str | None, layers: list[Layer], seed: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": os_,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": [f"/usr/bin/hello-{arch}"],
            "Labels": {"org.example.seed": seed},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"fastreg test layer {i}"}
                    for i in range(len(layers))],
    }
    if variant:
        cfg["variant"] = variant
    return cfg


class _Writer:
    """Writes blobs and manifests in the OCI layout (`oci`) or skopeo `dir:` format (`dir`)."""

    def __init__(self, root: Path, transport: str) -> None:
        self.root, self.transport = root, transport
        self.blobs: dict[str, int] = {}
        root.mkdir(parents=True, exist_ok=True)
        if transport == "oci":
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        else:
            (root / "version").write_text("Directory Transport Version: 1.1\n")

    def _put(self, name: str, data: bytes) -> dict[str, Any]:
        digest = sha256(data)
        path = self.root / name.format(hex=digest.split(":", 1)[1])
        if not path.exists():
            path.write_bytes(data)
        self.blobs[digest] = len(data)
        return {"digest": digest, "size": len(data)}

    def blob(self, data: bytes) -> dict[str, Any]:
        return self._put("blobs/sha256/{hex}" if self.transport == "oci" else "{hex}", data)

    def manifest(self, data: bytes) -> dict[str, Any]:
        return self._put("blobs/sha256/{hex}" if self.transport == "oci" else "{hex}.manifest.json", data)

    def top(self, data: bytes, media_type: str, tag: str) -> dict[str, Any]:
        if self.transport == "dir":
            (self.root / "manifest.json").write_bytes(data)
            digest = sha256(data)
            self.blobs[digest] = len(data)
            return {"digest": digest, "size": len(data)}
        desc = self.blob(data)
        layout_index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [{"mediaType": media_type, **desc, "annotations": {REF_NAME: tag}}]}
        (self.root / "index.json").write_bytes(canonical_json(layout_index))
        return desc


def _build(path: Path, tag: str, seed: str, docker: bool) -> ImageLayout:
    index_mt, manifest_mt, config_mt, layer_mt = (
        (DOCKER_LIST, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER) if docker
        else (OCI_INDEX, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER))
    transport = "dir" if docker else "oci"
    w = _Writer(path, transport)
    base, per_arch = default_layers(seed)
    images: list[PlatformImage] = []
    entries: list[dict[str, Any]] = []
    for os_, arch, variant in PLATFORMS:
        layers = [base, *per_arch[arch]]
        layer_descs = [{"mediaType": layer_mt, **w.blob(layer.blob)} for layer in layers]
        config = canonical_json(_config(os_, arch, variant, layers, seed))
        config_desc = {"mediaType": config_mt, **w.blob(config)}
        manifest = canonical_json({"schemaVersion": 2, "mediaType": manifest_mt,
                                   "config": config_desc, "layers": layer_descs})
        mdesc = w.manifest(manifest)
        platform: dict[str, str] = {"architecture": arch, "os": os_}
        if variant:
            platform["variant"] = variant
        entries.append({"mediaType": manifest_mt, **mdesc, "platform": platform})
        images.append(PlatformImage(os_, arch, variant, mdesc["digest"], mdesc["size"],
                                    config_desc["digest"], [d["digest"] for d in layer_descs]))

    index = canonical_json({"schemaVersion": 2, "mediaType": index_mt, "manifests": entries})
    idesc = w.top(index, index_mt, tag)
    return ImageLayout(path=path, tag=tag, transport=transport, index_digest=idesc["digest"],
                       index_media_type=index_mt, manifest_media_type=manifest_mt, images=images,
                       blobs=w.blobs)


def build_oci_image(path: Path, tag: str = "latest", seed: str = "fastreg") -> ImageLayout:
    """A multi-arch OCI image (index of linux/amd64 + linux/arm64) in an OCI layout at `path`."""
    return _build(path, tag, seed, docker=False)


def build_docker_image(path: Path, tag: str = "latest", seed: str = "fastreg") -> ImageLayout:
    """The same image with Docker schema2 media types (manifest list, v2 manifests, docker config),
    in skopeo's `dir:` format at `path` (`tag` is only recorded)."""
    return _build(path, tag, seed, docker=True)


# --- reading layouts back -----------------------------------------------------------------------


def read_image_dir(path: Path, transport: str = "oci") -> dict[str, bytes]:
    """Every blob and manifest in an OCI layout (`oci`) or skopeo `dir:` directory, as
    digest -> bytes.  Each file named by a digest must hash to its name."""
    out: dict[str, bytes] = {}
    files: list[tuple[Path, str | None]] = []
    if transport == "oci":
        files = [(f, "sha256:" + f.name) for f in (path / "blobs" / "sha256").iterdir()]
    else:
        for f in path.iterdir():
            if f.name == "version" or f.name.startswith("signature"):
                continue
            if f.name == "manifest.json":
                files.append((f, None))
            else:
                files.append((f, "sha256:" + f.name.removesuffix(".manifest.json")))
    for f, named in files:
        data = f.read_bytes()
        digest = sha256(data)
        assert named is None or named == digest, f"{f} does not hash to its name ({digest})"
        out[digest] = data
    return out


def layout_blobs(path: Path, transport: str = "oci") -> dict[str, int]:
    """Every blob and manifest in an image directory as digest -> size (see read_image_dir)."""
    return {d: len(b) for d, b in read_image_dir(path, transport).items()}


def layout_top(path: Path, tag: str | None = None) -> dict[str, Any]:
    """The descriptor in a layout's index.json for `tag` (or the only one)."""
    entries = json.loads((path / "index.json").read_bytes())["manifests"]
    if tag is not None:
        entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) == tag]
    assert len(entries) == 1, entries
    return dict(entries[0])
