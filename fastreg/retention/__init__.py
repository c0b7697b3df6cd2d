"""Keeping a registry tidy: tag immutability (``fastreg.immutability``), push history and retention
policies (``fastreg.retention``).

``immutable``  which tags can be neither moved nor deleted; the manifest service asks it before
               a tag PUT or a DELETE changes anything.
``history``    when each tag and manifest was pushed: the modification time of the link the push
               wrote (``_manifests/tags/<tag>/current/link``, ``_manifests/revisions/.../link``).
``policy``     the retention run: which tags and untagged manifests a policy deletes, and which
               rule spares each of the others; deletions go through the manifest service, as a
               client's DELETE does.
"""
