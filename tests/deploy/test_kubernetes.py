"""contrib/kubernetes: every manifest validates (strictly: no unknown field) against the Kubernetes
schemas of kubernetes-validate, and each deployment agrees with the fastreg config it mounts and
with the container image (ports, probes, metrics annotations, user, data path, drain timeout)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from fastreg.config import load_config
from tests.conftest import REPO_ROOT

MANIFESTS = sorted((REPO_ROOT / "contrib" / "kubernetes").glob("*.yaml"))
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]   # an older supported release and the newest
IMAGE_UID = 1000                                            # the Containerfile's USER


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_there_are_both_setups() -> None:
    assert {p.name for p in MANIFESTS} == {"single-replica.yaml", "replicas-s3-redis.yaml"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    """The check above is not vacuous: a misspelt probe field fails strict validation."""
    deployment = next(d for d in documents(MANIFESTS[0]) if d["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def fastreg_parts(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = documents(path)
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["spec"]["template"]["spec"]["containers"][0]["name"] == "fastreg")
    return config_map, deployment


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_deployment_matches_its_config(path: Path, tmp_path: Path) -> None:
    config_map, deployment = fastreg_parts(path)
    cfg_file = tmp_path / "config.yml"
    cfg_file.write_text(config_map["data"]["config.yml"])
    cfg = load_config(str(cfg_file))            # the mounted config is one fastreg accepts

    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert cfg.http.addr == f":{ports['registry']}"
    assert cfg.http.debug.addr == f":{ports['debug']}"
    # Probes on the debug listener's health endpoints.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "debug"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "debug"}
    # The metrics port is annotated for Prometheus and serves the configured path.
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == ports["debug"]
    assert cfg.http.debug.prometheus.enabled and notes["prometheus.io/path"] == cfg.http.debug.prometheus.path
    # The config is mounted where the image's command reads it (registry:2's path).
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == "/etc/docker/registry" and container["args"] == ["/etc/docker/registry/config.yml"]
    assert "/tmp" in mounts.values(), "a read-only root filesystem needs a writable /tmp (metrics files)"
    # Non-root as in the image; SIGTERM drains within the grace period.
    assert spec["securityContext"]["runAsUser"] == IMAGE_UID and spec["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert 0 < cfg.http.draintimeout < spec["terminationGracePeriodSeconds"]

    if cfg.storage.filesystem is not None:      # single replica: the volume holds the data
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
        assert mounts["data"] == cfg.storage.filesystem.rootdirectory
        assert spec["securityContext"]["fsGroup"] == IMAGE_UID
    else:                                       # replicas: object storage, Redis, a shared secret
        assert cfg.storage.s3 is not None and deployment["spec"]["replicas"] > 1
        assert cfg.storage.cache.blobdescriptor == "redis"
        redis_host = cfg.redis.addr.split(":")[0]
        services = {d["metadata"]["name"] for d in documents(path) if d["kind"] == "Service"}
        assert redis_host in services
        assert container["envFrom"][0]["secretRef"]["name"]  # REGISTRY_HTTP_SECRET for every replica
        assert "data" not in mounts
