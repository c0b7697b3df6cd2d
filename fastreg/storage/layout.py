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
      _fastreg_gc/active, epoch                             online gc's heartbeat and end marker
      _fastreg_gc/tombstones/<alg>/<hex>                    about to be deleted by gc
      _fastreg_gc/vetoes/<alg>/<hex>                        a push needs it (maintenance/gc.py)
      _fastreg_quarantine/<time>/blobs/...                  blobs `fastreg check --repair` moved
      _fastreg_history/pulls/<name>/_base.json, _w/...      pull history (retention/pulls.py)
      _fastreg_proxy/fetching/<alg>/<hex>/<replica id>      pull-through cache leases: which
                                                            replica fetches a blob (registry/leases.py)
      _fastreg_deleting/<name>/_revisions/<alg>/<hex>       a retention run is deleting this
      _fastreg_deleting/<name>/_tags/<tag>                  (registry/deletes.py)

Everything that names one of these paths calls a function here; ``walk.py`` lists them (every
blob, every link of a link directory, every upload session, ...).

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


def tag_index_entry_dir(name: str, tag: str, alg: str, hex_: str) -> str:
    """One digest's entry in a tag's history (removing it removes the entry)."""
    return f"{REPOS}/{name}/_manifests/tags/{tag}/index/{alg}/{hex_}"


def uploads_dir(name: str) -> str:
    return f"{REPOS}/{name}/_uploads"


UPLOADS = "_uploads"     # a repository's upload sessions: <repository>/_uploads/<uuid>


def upload_dir(name: str, uuid: str) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}"


def upload_data(name: str, uuid: str) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}/data"


def upload_startedat(name: str, uuid: str) -> str:
    return f"{REPOS}/{name}/_uploads/{uuid}/startedat"


def upload_entry(name: str, uuid: str, leaf: str) -> str:
    """One entry of an upload session's directory (``data``, ``startedat``, ``hashstates``)."""
    return f"{REPOS}/{name}/_uploads/{uuid}/{leaf}"


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


def referrer_entry_dir(name: str, s_alg: str, s_hex: str, alg: str, hex_: str) -> str:
    """A referrer's entry in its subject's index (removing it removes the entry)."""
    return f"{REPOS}/{name}/_referrers/{s_alg}/{s_hex}/{alg}/{hex_}"


def link_entry_dir(base: str, alg: str, hex_: str) -> str:
    """An entry ``<alg>/<hex>`` of a link directory (``layers_dir``, ``revisions_dir``,
    ``referrers_dir``): what removing the entry deletes."""
    return f"{base}/{alg}/{hex_}"


def entry_link(entry_dir: str) -> str:
    """The ``link`` file of a link directory's entry."""
    return f"{entry_dir}/link"


# fastreg gc's own state (maintenance/gc.py), beside blobs/ (Distribution ignores it)
GC_ROOT = f"{ROOT}/_fastreg_gc"
GC_ACTIVE = f"{GC_ROOT}/active"
GC_EPOCH = f"{GC_ROOT}/epoch"
GC_TOMBSTONES = f"{GC_ROOT}/tombstones"
GC_VETOES = f"{GC_ROOT}/vetoes"


def gc_tombstone(alg: str, hex_: str) -> str:
    return f"{GC_TOMBSTONES}/{alg}/{hex_}"


def gc_veto(alg: str, hex_: str) -> str:
    return f"{GC_VETOES}/{alg}/{hex_}"


# the pull history (retention/pulls.py): every worker appends to its own files under _w/,
# compacted into _base.json
PULL_HISTORY = f"{ROOT}/_fastreg_history/pulls"


def pull_history_dir(name: str) -> str:
    return f"{PULL_HISTORY}/{name}"


def pull_writers_dir(name: str) -> str:
    return f"{PULL_HISTORY}/{name}/_w"


def pull_base(name: str) -> str:
    return f"{PULL_HISTORY}/{name}/_base.json"


def pull_writer_file(name: str, file: str) -> str:
    """One writer's file ``file`` in ``pull_writers_dir(name)``."""
    return f"{PULL_HISTORY}/{name}/_w/{file}"


# storage quotas (retention/quota.py): a usage record per repository, the registry's totals, and
# the lock their updates take
QUOTA_ROOT = f"{ROOT}/_fastreg_quota"
QUOTA_LOCK = f"{QUOTA_ROOT}/lock"
QUOTA_TOTALS = f"{QUOTA_ROOT}/totals.json"
QUOTA_RECORDS = f"{QUOTA_ROOT}/repositories"
QUOTA_RECORD = "_usage.json"        # no repository name component starts with "_"


def quota_record(name: str) -> str:
    return f"{QUOTA_RECORDS}/{name}/{QUOTA_RECORD}"


# immutable tags (retention/immutable.py): first pushes of immutable tags take this lock
IMMUTABILITY_LOCK = f"{ROOT}/_fastreg_immutability/lock"


# the pull-through cache's leases (registry/leases.py): one per replica fetching a blob, not
# durable; gc and check do not look there
PROXY_FETCHING = f"{ROOT}/_fastreg_proxy/fetching"


def lease_dir(alg: str, hex_: str) -> str:
    """The leases on one blob: a file per replica fetching it."""
    return f"{PROXY_FETCHING}/{alg}/{hex_}"


def lease(alg: str, hex_: str, holder: str) -> str:
    """Replica `holder`'s lease on one blob."""
    return f"{PROXY_FETCHING}/{alg}/{hex_}/{holder}"


def lock_anchor(lock: str) -> str:
    """The file a storage-wide lock directory keeps (retention/lock.py)."""
    return f"{lock}/anchor"


# what a retention run is deleting right now (registry/deletes.py): a pushing PUT waits for it
DELETE_INTENTS = f"{ROOT}/_fastreg_deleting"


def delete_intent_revision(name: str, alg: str, hex_: str) -> str:
    return f"{DELETE_INTENTS}/{name}/_revisions/{alg}/{hex_}"


def delete_intent_tag(name: str, tag: str) -> str:
    return f"{DELETE_INTENTS}/{name}/_tags/{tag}"
