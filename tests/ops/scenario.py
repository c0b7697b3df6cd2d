"""A registry with everything garbage collection must get right, built through a real fastreg.

``build(client)`` pushes, over HTTP, into two repositories:

* ``app/web``: images A (tags v1 and old — "old" first pointed at D), B (v2) sharing a layer with
  A; C pushed by digest (untagged); D, untagged once "old" moved to A; a multi-arch index I (tag
  multi) whose children M1, M2 are pushed by digest; referrers: a signature S on A, an SBOM S2 on
  I, a signature S3 on S (a referrer of a referrer), R0 on the untagged C; an orphan blob O (an
  upload no manifest names); E, pushed by tag then deleted through the API.
* ``lib/base``: F (tag 1), sharing the layer of A and B.

``expected(...)`` says which blobs (config, layer and manifest digests) must survive for a
given set of options, so tests compare survivors with an explicit set, never with themselves.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from tests.support.registry_client import (
    OCI_LAYER,
    Blob,
    Manifest,
    make_config,
    make_index,
    make_layer,
    make_manifest,
    push_blob,
    push_manifest,
)

SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"


@dataclass
class Scenario:
    manifests: dict[str, Manifest] = field(default_factory=dict)   # A, B, ... → manifest
    orphan: Blob | None = None

    def blobs_of(self, *names: str) -> set[str]:
        """Digests of the named manifests, their configs and layers (children not included)."""
        out: set[str] = set()
        for n in names:
            m = self.manifests[n]
            out.add(m.digest)
            out.update(b.digest for b in m.blobs)
        return out

    def all_blobs(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for m in self.manifests.values():
            out[m.digest] = m.body
            for b in m.blobs:
                out[b.digest] = b.data
        assert self.orphan is not None
        out[self.orphan.digest] = self.orphan.data
        return out

    def expected(self, delete_untagged: bool, referrers_follow_subject: bool = True) -> set[str]:
        if not delete_untagged:
            live = [n for n in self.manifests if n != "E"]
        else:
            live = ["A", "B", "I", "M1", "M2", "F"]
            if referrers_follow_subject:
                live += ["S", "S2", "S3"]
        return self.blobs_of(*live)


def _artifact(subject: Manifest, artifact_type: str, payload: bytes) -> Manifest:
    empty = Blob(b"{}", "application/vnd.oci.empty.v1+json")
    return make_manifest(empty, [Blob(payload, OCI_LAYER)], subject=subject, artifact_type=artifact_type)


def build(c: httpx.Client) -> Scenario:
    s = Scenario()
    web, base = "app/web", "lib/base"
    shared = make_layer(3000)
    ms = s.manifests
    ms["A"] = make_manifest(make_config(), [shared, make_layer(2000)])
    ms["B"] = make_manifest(make_config(), [shared, make_layer(2100)])
    ms["C"] = make_manifest(make_config(), [shared, make_layer(2200)])
    ms["D"] = make_manifest(make_config(), [make_layer(2300)])
    ms["E"] = make_manifest(make_config(), [make_layer(2400)])
    ms["M1"] = make_manifest(make_config(), [shared, make_layer(2500)])
    ms["M2"] = make_manifest(make_config(), [make_layer(2600)])
    ms["I"] = make_index([ms["M1"], ms["M2"]])
    ms["S"] = _artifact(ms["A"], SIG_TYPE, b"signature of A")
    ms["S2"] = _artifact(ms["I"], SBOM_TYPE, b'{"spdxVersion": "SPDX-2.3"}')
    ms["S3"] = _artifact(ms["S"], SIG_TYPE, b"countersignature of S")
    ms["R0"] = _artifact(ms["C"], SIG_TYPE, b"signature of C")
    ms["F"] = make_manifest(make_config(), [shared])

    push_manifest(c, web, ms["D"], "old")
    push_manifest(c, web, ms["A"], "v1")
    push_manifest(c, web, ms["A"], "old", with_blobs=False)
    push_manifest(c, web, ms["B"], "v2")
    push_manifest(c, web, ms["C"])
    push_manifest(c, web, ms["I"], "multi")
    for n in ("S", "S2", "S3", "R0"):
        push_manifest(c, web, ms[n])
    push_manifest(c, web, ms["E"], "doomed")
    r = c.delete(f"/v2/{web}/manifests/{ms['E'].digest}")
    assert r.status_code == 202, r.text
    s.orphan = make_layer(1500)
    push_blob(c, web, s.orphan)
    push_manifest(c, base, ms["F"], "1")
    return s
