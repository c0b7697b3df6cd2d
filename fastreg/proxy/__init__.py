"""Pull-through cache: fastreg in front of upstream registries.

The proxy wraps the local registry services, as Distribution's proxy does: a blob store and a
manifest store with an upstream behind them.  It writes nothing itself: verified blobs are stored
by ``BlobStore.put_verified``, manifests by ``ManifestStore.put_proxied`` (validated exactly as a
push, stored and tagged in the push order — the tag service writes a new tag's current link before
its index entry, so a crash never leaves a tag naming nothing).

==============  =====================================================================
``cache``       ``Proxy``: which repositories are proxied, dispatch
``blobs``       ``ProxyBlobStore``: one fetch per missing blob, streamed to every client
``manifests``   ``ProxyManifestStore``: fetch, validate, store; tag revalidation (ttl)
``tags``        tag lists forwarded to upstream
``upstream``    the upstream client: authentication, redirects and realms behind the address
                guard, bounded reads with deadlines
``spool``       host-local locks, spool files, the in-flight fetch clients stream from
``peers``       coalescing across replicas sharing one storage
==============  =====================================================================

Which repositories are proxied
------------------------------
* ``proxy.remoteurl`` (Distribution's single upstream): every repository; ``/v2/<name>/...``
  is fetched from ``<remoteurl>/v2/<name>/...``.
* ``fastreg.proxy.upstreams: {hub: {remoteurl, username, password, ttl, allowedhosts}}``: by name
  prefix; ``/v2/hub/library/alpine/...`` is fetched from the "hub" upstream as ``library/alpine``
  and stored locally under ``hub/library/alpine``.  Repositories under no prefix are ordinary
  local repositories (pushes allowed), so one fastreg is a cache of several registries and a
  registry of its own.
Writes to a proxied repository (uploads, manifest PUT, DELETE) answer 405 UNSUPPORTED, as
Distribution's proxy does.

Manifests
---------
By digest: served locally once stored; a miss is fetched from upstream (at most the manifest size
limit, within a deadline), its digest checked, validated as a push would be, stored, served.  A
manifest the registry would refuse as a push (bad JSON, duplicate keys, a media type that is not a
manifest's, too large, a Content-Type that contradicts its body) is refused with 502 and
``MANIFEST_INVALID`` and nothing is stored.  By tag: the local tag is served while its
``current/link`` is younger than ``ttl`` (its mtime is the time it was last checked against
upstream); after that fastreg sends upstream a HEAD, and if the digest is unchanged it only
rewrites the tag (new mtime), else it fetches the new manifest and moves the tag.  If upstream
cannot be reached (or answers something invalid), a stale local tag is served (logged).  ``ttl``
unset is Distribution's 168h; ``0`` never revalidates.  (Distribution's ``ttl`` instead *deletes*
cached content after that time; fastreg keeps it, and ``fastreg gc`` collects what nothing tags.)

Blobs and coalescing
--------------------
A blob miss starts one fetch, whatever the number of clients asking: every client streams the
bytes *as they arrive*, from a spool file the fetch appends to — all but the last byte of its
response, which is sent only once the whole blob hashes to its digest.  On a mismatch (or a
short, long or failed upstream body) every response is aborted before its last byte (HTTP/1.1:
the connection closes short of its Content-Length; HTTP/2: the stream is reset), nothing is
stored, and the event is logged and counted (``registry_proxy_refused_total``).

* Within a worker, the first request creates an ``InFlight`` for the digest; later requests
  join it.  Readers ``pread`` the spool up to what has been written and wait on an
  ``asyncio.Condition`` for more.
* Across the worker processes of a host, the fetch holds an exclusive ``flock`` on
  ``<tmp>/fastreg-proxy/<storage hash>/<alg>-<hex>.lock``; a worker that cannot take it
  *follows* the holder: it opens the holder's spool file (its size is in ``<alg>-<hex>.size``)
  and serves it as it grows, polling its size every few milliseconds; its clients' last byte
  waits until the lock is released and the blob is in storage (stored means verified).  So one
  host makes one upstream fetch per blob.
* Across hosts, with ``fastreg.proxy.peerurl`` set on every replica, one replica per blob is
  elected through leases in the shared storage and the others stream from it (``peers.py``); the
  bytes from a peer are verified again.
* The fetch runs to the end even if the client that started it goes away.

A ``Range`` request on a missing blob joins the same fetch: its bytes are sent as the spool holds
them, and its last byte once the whole blob is verified (206; aborted like the others on a
mismatch).  ``HEAD`` of a missing blob, or of a manifest this cache does not hold, asks upstream
with ``HEAD`` and stores nothing (a GET would count against upstream pull rate limits such as
Docker Hub's; a HEAD does not).  Tag lists are forwarded to upstream (the local list if upstream is
unreachable).

Upstream authentication and addresses: see ``upstream.py``.

Every upstream fetch logs one line on ``fastreg.proxy`` at info level ("proxy fetch ...") and
counts in ``Proxy.fetches``: that is how the tests count them.
"""
from __future__ import annotations

from .cache import Proxy
from .spool import host_lock
from .upstream import Upstream

__all__ = ["Proxy", "Upstream", "host_lock"]
