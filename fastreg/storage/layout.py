"""Where every object lives: Distribution's on-disk layout, unchanged.

A data directory (or bucket) written by CNCF Distribution (`registry:2`) is served by
fastreg as it is, and the other way round::

    /docker/registry/v2/
      blobs/<alg>/<hex[:2]>/<hex>/data                      blob and manifest bytes
      repositories/<name>/
        _layers/<alg>/<hex>/link                            "alg:hex": blob linked into the repo
        _manifests/revisions/<alg>/<hex>/link               manifest revision in the repo
        _manifests/tags/<tag>/current/link                  what the tag points at now
        _manifests/tags/<tag>/index/<alg>/<hex>/link        every digest the tag has pointed at
        _uploads/<uuid>/data                                upload in progress
        _uploads/<uuid>/startedat                           RFC 3339 start time
        _uploads/<uuid>/hashstates/<alg>/<offset>           saved hash state (Go MarshalBinary)
        _referrers/<alg>/<subject-hex>/<alg>/<hex>/link     fastreg's referrers index (ignored
                                                            by Distribution; rebuilt by gc)
      fastreg/catalog-generation                            changes whenever fastreg creates a
                                                            repository (catalog cache validator)

Driver paths are absolute, '/'-separated and never contain '..': the names, tags and
digests that go into them are validated before any path is built (see ``reference.py``).
"""
from __future__ import annotations

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOS = f"{ROOT}/repositories"


CATALOG_GENERATION = f"{ROOT}/fastreg/catalog-generation"


def blob_dir(alg: str, hex_: str) -> str:
    return f"{BLOBS}/{alg}/{hex_[:2]}/{hex_}"


def blob_data(alg: str, hex_: str) -> str:
    return f"{BLOBS}/{alg}/{hex_[:2]}/{hex_}/data"


def repo(name: str) -> str:
    return f"{REPOS}/{name}"


def layers_dir(name: str) -> str:
    return f"{REPOS}/{name}/_layers"


def layer_link(name: str, alg: str, hex_: str) -> str:
    return f"{REPOS}/{name}/_layers/{alg}/{hex_}/link"


def layer_dir(name: str, alg: str, hex_: str) -> str:
    return f"{REPOS}/{name}/_layers/{alg}/{hex_}"


def revisions_dir(name: str) -> str:
    return f"{REPOS}/{name}/_manifests/revisions"


def revision_link(name: str, alg: str, hex_: str) -> str:
    return f"{REPOS}/{name}/_manifests/revisions/{alg}/{hex_}/link"


def revision_dir(name: str, alg: str, hex_: str) -> str:
    return f"{REPOS}/{name}/_manifests/revisions/{alg}/{hex_}"


def manifests_dir(name: str) -> str:
    return f"{REPOS}/{name}/_manifests"


def tags_dir(name: str) -> str:
    return f"{REPOS}/{name}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{REPOS}/{name}/_manifests/tags/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{REPOS}/{name}/_manifests/tags/{tag}/current/link"


def tag_index_link(name: str, tag: str, alg: str, hex_: str) -> str:
    return f"{REPOS}/{name}/_manifests/tags/{tag}/index/{alg}/{hex_}/link"


def uploads_dir(name: str) -> str:
    return f"{REPOS}/{name}/_uploads"


UPLOADS = "_uploads"     # a repository's upload sessions: <repository>/_uploads/<uuid>


def repository_of_upload_dir(path: str) -> str:
    """The repository name of an upload session directory ``.../<name>/_uploads/<uuid>``."""
    return path[len(REPOS) + 1:path.rindex(f"/{UPLOADS}/")]


def upload_dir(name: str, uuid: str) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}"


def upload_data(name: str, uuid: str) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}/data"


def upload_startedat(name: str, uuid: str) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}/startedat"


def upload_hashstate(name: str, uuid: str, alg: str, offset: int) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}/hashstates/{alg}/{offset}"


def upload_hashstates(name: str, uuid: str, alg: str) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}/hashstates/{alg}"


# fastreg check --repair moves a damaged blob here, beside blobs/ (Distribution ignores it)
QUARANTINE = f"{ROOT}/_fastreg_quarantine"


def quarantined_blob_data(stamp: str, alg: str, hex_: str) -> str:
    return f"{QUARANTINE}/{stamp}/blobs/{alg}/{hex_[:2]}/{hex_}/data"


def referrers_root(name: str) -> str:
    return f"{REPOS}/{name}/_referrers"


def referrers_dir(name: str, alg: str, subject_hex: str) -> str:
    return f"{REPOS}/{name}/_referrers/{alg}/{subject_hex}"


def referrer_link(name: str, s_alg: str, s_hex: str, alg: str, hex_: str) -> str:
    return f"{REPOS}/{name}/_referrers/{s_alg}/{s_hex}/{alg}/{hex_}/link"
