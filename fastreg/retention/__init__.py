"""Keeping a registry tidy: tag immutability (``fastreg.immutability``), push history and retention
policies (``fastreg.retention``), storage quotas (``fastreg.quota``).

``immutable``  which tags can be neither moved nor deleted; the manifest service asks it before
               a tag PUT or a DELETE changes anything.
``history``    when each tag and manifest was pushed: the modification time of the link the push
               wrote (``_manifests/tags/<tag>/current/link``, ``_manifests/revisions/.../link``).
``policy``     the retention run: which tags and untagged manifests a policy deletes, and which
               rule spares each of the others; deletions go through the manifest service, as a
               client's DELETE does.
``quota``      storage quotas: each repository's usage, kept in storage and counted at every
               manifest PUT and DELETE; the manifest and upload services ask it before writing.
"""
