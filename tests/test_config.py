"""fastreg.config: Distribution's config.yml unchanged, env overrides, defaults, worker round trip."""
from __future__ import annotations

import gzip
import logging
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from fastreg import config as config_mod
from fastreg.config import (
    DEFAULT_ROOTDIRECTORY,
    Config,
    ConfigError,
    config_from_json,
    dump_config,
    listen_address,
    load_config,
    parse_duration,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEBIAN_CONFIG = Path("/etc/docker/registry/config.yml")
DEBIAN_DOC = Path("/usr/share/doc/docker-registry/configuration.md.gz")

# Distribution's cmd/registry/config-example.yml (what registry:2 ships as /etc/docker/registry/config.yml)
DISTRIBUTION_EXAMPLE = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog wired to fastreg.config directly (setup_logging may stop 'fastreg' from propagating)."""
    logger = logging.getLogger("fastreg.config")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="fastreg.config")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=env or {})


def messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


# -- Distribution's own configs ------------------------------------------------------------------

def test_distribution_example_config(tmp_path: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    cfg = load(tmp_path, DISTRIBUTION_EXAMPLE)
    assert cfg.version == "0.1"
    assert cfg.storage.driver_name == "filesystem"
    assert cfg.storage.filesystem is not None
    assert cfg.storage.filesystem.rootdirectory == "/var/lib/registry"
    assert cfg.http.addr == ":5000"
    assert listen_address(cfg) == ("0.0.0.0", 5000)
    assert cfg.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    assert cfg.health.storagedriver.enabled is True
    assert cfg.health.storagedriver.interval == 10.0
    assert cfg.health.storagedriver.threshold == 3
    assert cfg.log.level == "info"
    assert cfg.log.fields == {"service": "registry"}
    assert cfg.storage.delete.enabled is False
    text = messages(warnings_log)
    assert "'storage.cache'" in text
    assert "'health" not in text                 # health.storagedriver: used
    assert "'log.fields'" not in text            # used: the fields of JSON log lines
    # keys fastreg uses are not warned about
    assert "'http" not in text and "'storage.filesystem'" not in text


@pytest.mark.skipif(not DEBIAN_CONFIG.exists(), reason="Debian's docker-registry is not installed")
def test_debian_docker_registry_config(warnings_log: pytest.LogCaptureFixture) -> None:
    raw = yaml.safe_load(DEBIAN_CONFIG.read_text())
    cfg = load_config(DEBIAN_CONFIG, env={})
    assert cfg.storage.driver_name == "filesystem"
    assert cfg.storage.filesystem is not None
    assert cfg.storage.filesystem.rootdirectory == raw["storage"]["filesystem"]["rootdirectory"]
    assert cfg.storage.delete.enabled is bool(raw["storage"].get("delete", {}).get("enabled", False))
    assert cfg.http.addr == raw["http"]["addr"]
    if "auth" in raw:
        assert cfg.auth.type == next(iter(raw["auth"]))
        assert "'auth'" not in messages(warnings_log)    # enforced (fastreg.auth)


def _documented_options() -> dict[str, Any]:
    """The "List of configuration options" block of Distribution 2.8's configuration.md, made loadable."""
    doc = gzip.decompress(DEBIAN_DOC.read_bytes()).decode()
    block = re.search(r"## List of configuration options.*?```none\n(.*?)```", doc, re.DOTALL)
    assert block is not None
    raw = yaml.safe_load(block.group(1))
    # The listing shows every alternative at once; keep one storage driver and one auth type,
    # and replace the two placeholders that are not YAML values.
    for driver in ("azure", "gcs", "s3", "swift", "oss", "inmemory"):
        del raw["storage"][driver]
    raw["auth"] = {"htpasswd": raw["auth"]["htpasswd"]}
    raw["notifications"]["endpoints"][0]["headers"] = {"Authorization": ["Bearer x"]}
    raw["proxy"].update(username="user", password="pass")
    # Its registry and repository middleware are placeholders that Distribution itself refuses to
    # start with (no such middleware is registered); see test_documented_middleware_placeholders.
    del raw["middleware"]["registry"], raw["middleware"]["repository"]
    return raw


@pytest.mark.skipif(not DEBIAN_DOC.exists(), reason="Debian's docker-registry docs are not installed")
def test_every_documented_distribution_key_is_accepted(tmp_path: Path,
                                                       warnings_log: pytest.LogCaptureFixture) -> None:
    raw = _documented_options()
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path, env={})
    assert cfg.log.level == "debug"
    assert cfg.log.hooks[0].options.from_ == "sender@example.com"
    assert cfg.storage.filesystem is not None and cfg.storage.filesystem.maxthreads == 100
    assert cfg.storage.maintenance.uploadpurging.age == 168 * 3600
    assert cfg.http.prefix == "/my/nested/registry/"
    assert cfg.http.draintimeout == 60.0
    assert cfg.http.tls.clientcas == ["/path/to/ca.pem", "/path/to/another/ca.pem"]
    assert cfg.redis.dialtimeout == pytest.approx(0.01)
    assert cfg.redis.pool.idletimeout == 300.0
    assert cfg.notifications.endpoints[0].timeout == 1.0
    assert cfg.notifications.endpoints[0].ignore.actions == ["pull"]
    assert cfg.health.http[0].statuscode == 200
    assert cfg.middleware["storage"][0].options == {"baseurl": "https://example.com/"}
    assert cfg.validation.manifests.urls.deny == [r"^https?://www\.example\.com/"]
    text = messages(warnings_log)
    for key in ("reporting", "compatibility.schema1.enabled", "http.tls.letsencrypt", "log.hooks", "loglevel"):
        assert f"'{key}'" in text, key
    assert "does not accept schema1 manifests" in text
    for implemented in ("'notifications'", "'http.debug'", "'proxy'", "'storage.maintenance.uploadpurging'",
                        "'validation'", "'validation.manifests.urls'", "'notifications.events.includereferences'",
                        "'health.file'", "'health.http'", "'health.tcp'", "'middleware", "'compatibility'"):
        assert implemented not in text
    # the listing sets storage.cache.blobdescriptor: redis, which fastreg implements
    assert cfg.storage.cache.blobdescriptor == "redis"
    assert "'redis'" not in text and "'storage.cache'" not in text


@pytest.mark.skipif(not DEBIAN_DOC.exists(), reason="Debian's docker-registry docs are not installed")
def test_documented_middleware_placeholders(tmp_path: Path) -> None:
    """The listing's ARegistryMiddleware: Distribution panics "unable to configure registry
    middleware"; fastreg refuses the config the same way."""
    raw = _documented_options()
    raw["middleware"]["registry"] = [{"name": "ARegistryMiddleware", "options": {"foo": "bar"}}]
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"middleware.registry.0: unable to configure registry middleware "
                                          r"\(ARegistryMiddleware\)"):
        load_config(path, env={})


# -- middleware, policy, compatibility, cache --------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("middleware:\n  storage:\n    - name: nosuch\n",
     (r"middleware.storage.0: unable to configure storage middleware \(nosuch\): no storage middleware "
      r"registered with name: nosuch")),
    ("middleware:\n  storage:\n    - name: redirect\n", r"\(redirect\): no baseurl provided"),
    ("middleware:\n  storage:\n    - name: redirect\n      options: {baseurl: 'http://'}\n",
     "no host specified for redirect baseurl"),
    ("middleware:\n  storage:\n    - name: redirect\n      options: {baseurl: 5}\n", "baseurl must be a string"),
    ("middleware:\n  storage:\n    - name: redirect\n      options: {baseurl: 'https://x', port: 1}\n",
     "unknown options"),
    ("middleware:\n  storage:\n    - options: {baseurl: 'https://x'}\n", "a middleware needs a name"),
    ("middleware:\n  repository:\n    - name: openshift\n", r"unable to configure repository middleware"),
    ("middleware:\n  storgae:\n    - name: redirect\n", r"unknown configuration key 'middleware.storgae'"),
])
def test_middleware_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)


def test_middleware_accepted(tmp_path: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    from fastreg.storage.driver.wrappers.middleware import Redirect, specs
    cfg = load(tmp_path, """\
        middleware:
          storage:
            - name: redirect
              options: {baseurl: "cdn.example.com:8443/base/"}
            - name: whatever-it-is
              disabled: true
          registry:
            - name: skipped-too
              disabled: true
        """)
    (spec,) = specs(cfg.middleware["storage"])
    assert spec == Redirect("https", "cdn.example.com:8443", "/base/")   # 2.8: a bare host is https
    assert spec.url("/docker/registry/v2/blobs/sha256/ab/abcd/data") == \
        "https://cdn.example.com:8443/base/docker/registry/v2/blobs/sha256/ab/abcd/data"
    assert Redirect("http", "h:1", "").url("/x/data") == "http://h:1/x/data"
    assert Redirect("http", "h", "/p").url("/x/data") == "http://h/p/x/data"
    assert messages(warnings_log) == ""


def test_policy_tag_and_schema1_keys(tmp_path: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    cfg = load(tmp_path, """\
        policy: {repository: {classes: [image]}}
        storage: {inmemory: {}, tag: {concurrencylimit: 3}}
        compatibility: {schema1: {enabled: false, signingkeyfile: /etc/registry/key.json}}
        """)
    assert cfg.policy.repository.classes == ["image"] and cfg.storage.tag.concurrencylimit == 3
    assert messages(warnings_log) == ""                  # implemented, or (schema1 off) what fastreg does
    load(tmp_path, "compatibility: {schema1: {enabled: true}}\n")
    assert "'compatibility.schema1.enabled': fastreg does not accept schema1 manifests" in messages(warnings_log)


@pytest.mark.parametrize(("cache", "warning"), [
    ("{blobdescriptor: inmemory, blobdescriptorsize: 10000}", "blobdescriptor: inmemory is not implemented"),
    ("{blobdescriptor: memcached}", "unknown cache type 'memcached', caching disabled"),
    ("{}", None),
])
def test_storage_cache_warnings(tmp_path: Path, warnings_log: pytest.LogCaptureFixture, cache: str,
                                warning: str | None) -> None:
    load(tmp_path, f"storage: {{inmemory: {{}}, cache: {cache}}}\n")
    text = messages(warnings_log)
    assert (warning in text) if warning else text == ""


# -- rejected and accepted keys ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "path", "valid"), [
    ("http:\n  adr: :5000\n", "http.adr", "addr"),
    ("storage:\n  filesystem:\n    rootdir: /x\n", "storage.filesystem.rootdir", "rootdirectory"),
    ("storage:\n  delete:\n    enable: true\n", "storage.delete.enable", "enabled"),
    ("storage:\n  swiftly: {}\n", "storage.swiftly", "filesystem"),
    ("logging:\n  level: info\n", "logging", "storage"),
    ("fastreg:\n  worker: 2\n", "fastreg.worker", "workers"),
    ("notifications:\n  endpoints:\n  - name: a\n    urls: http://x\n", "notifications.endpoints.0.urls", "url"),
])
def test_unknown_keys_are_rejected_with_their_path(tmp_path: Path, text: str, path: str, valid: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    assert f"'{path}'" in str(exc.value)
    assert valid in str(exc.value).split("valid keys here:")[1]


def test_wrong_types_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^fastreg\.workers: .*int"):
        load(tmp_path, "fastreg:\n  workers: many\n")
    with pytest.raises(ConfigError, match=r"^http\.draintimeout: invalid duration"):
        load(tmp_path, "http:\n  draintimeout: soon\n")
    with pytest.raises(ConfigError, match="log.level"):
        load(tmp_path, "log:\n  level: loud\n")
    with pytest.raises(ConfigError, match="version"):
        load(tmp_path, "version: 0.2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(tmp_path, "- a\n- b\n")


def test_unix_socket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http.net"):
        load(tmp_path, "http:\n  net: unix\n  addr: /run/registry.sock\n")


def test_two_storage_drivers_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one storage driver.*filesystem, inmemory"):
        load(tmp_path, "storage:\n  filesystem:\n    rootdirectory: /x\n  inmemory:\n")
    with pytest.raises(ConfigError, match="exactly one auth"):
        load(tmp_path, "auth:\n  silly: {realm: r}\n  htpasswd: {realm: r, path: /p}\n")


def test_driver_forms(tmp_path: Path) -> None:
    cfg = load(tmp_path, "storage: inmemory\n")
    assert cfg.storage.driver_name == "inmemory"
    assert cfg.storage.filesystem is None
    cfg = load(tmp_path, "storage:\n  inmemory:\n  delete:\n    enabled: true\n")
    assert (cfg.storage.driver_name, cfg.storage.delete.enabled) == ("inmemory", True)
    cfg = load(tmp_path, "storage:\n  s3:\n    bucket: b\n    region: eu-west-1\n    chunksize: 5242880\n"
                         "  redirect:\n    disable: true\n")
    assert cfg.storage.driver_name == "s3"
    assert cfg.storage.s3 == {"bucket": "b", "region": "eu-west-1", "chunksize": 5242880}
    assert cfg.storage.driver_params == cfg.storage.s3
    assert cfg.storage.redirect.disable is True
    cfg = load(tmp_path, "storage:\n  filesystem:\n    maxthreads: 50\n", env={"XDG_DATA_HOME": "/xdg"})
    assert cfg.storage.filesystem == config_mod.Filesystem(rootdirectory="/xdg/fastreg", maxthreads=50)


def test_auth_forms(tmp_path: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    cfg = load(tmp_path, "auth:\n  token:\n    realm: https://auth/token\n    service: reg\n    issuer: me\n"
                         "    rootcertbundle: /certs.pem\n    signingalgorithms: [RS256]\n")
    assert cfg.auth.type == "token"
    assert cfg.auth.token is not None
    assert (cfg.auth.token.issuer, cfg.auth.token.signingalgorithms) == ("me", ["RS256"])
    assert load(tmp_path, "auth: silly\n").auth.type == "silly"
    warnings_log.clear()
    assert load(tmp_path, "auth:\n  none:\n").auth.type == "none"
    assert "'auth'" not in messages(warnings_log)   # "no auth" is what fastreg does
    load(tmp_path, "auth:\n  htpasswd: {realm: r, path: /p}\n")
    assert "'auth'" not in messages(warnings_log)   # enforced now


def test_fastreg_auth_section(tmp_path: Path) -> None:
    cfg = load(tmp_path, "fastreg:\n  auth:\n    access:\n      groups: {admins: [alice]}\n"
                         "      catalog: ['@admins']\n      rules:\n"
                         "        - {repository: 'team/*', pull: [authenticated], push: ['@admins']}\n"
                         "    tokenservice: {key: k.pem, certificate: c.pem, expiration: 10m}\n"
                         "    ratelimit: {client: {rate: 5, burst: 20}}\n")
    a = cfg.fastreg.auth
    assert a.access is not None and a.access.rules[0].push == ["@admins"] and a.access.rules[0].delete == []
    assert a.tokenservice is not None and a.tokenservice.expiration == 600.0 and a.tokenservice.path == "/token"
    assert (a.ratelimit.client.rate, a.ratelimit.client.burst, a.ratelimit.user.rate) == (5.0, 20, 0.0)
    with pytest.raises(ConfigError, match="fastreg.auth.access.rules.0"):
        load(tmp_path, "fastreg:\n  auth:\n    access:\n      rules:\n        - {repository: x, pul: [a]}\n")
    assert load(tmp_path, "version: 0.1\n").auth.type is None


def test_go_scalars_and_conveniences(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        version: "0.1"
        http:
          secret: 12345
          headers:
            Strict-Transport-Security: max-age=31536000
        fastreg:
          httpmode: 2
        """)
    assert cfg.http.secret == "12345"
    assert cfg.http.headers == {"Strict-Transport-Security": ["max-age=31536000"]}
    assert cfg.fastreg.httpmode == "2"


def test_loglevel_is_deprecated_but_honoured(tmp_path: Path, warnings_log: pytest.LogCaptureFixture) -> None:
    assert load(tmp_path, "loglevel: debug\n").log.level == "debug"
    assert "deprecated" in messages(warnings_log)
    assert load(tmp_path, "loglevel: debug\nlog:\n  level: error\n").log.level == "error"


def test_catalog_maxentries_from_distribution_3(tmp_path: Path) -> None:
    assert load(tmp_path, "catalog:\n  maxentries: 50\n").fastreg.catalog.maxentries == 50
    cfg = load(tmp_path, "catalog:\n  maxentries: 50\nfastreg:\n  catalog:\n    maxentries: 70\n")
    assert cfg.fastreg.catalog.maxentries == 70


# -- defaults ------------------------------------------------------------------------------------

def test_defaults_without_a_file() -> None:
    cfg = load_config(None, env={"HOME": "/home/u"})
    assert cfg.storage.driver_name == "filesystem"
    assert cfg.storage.filesystem is not None
    assert cfg.storage.filesystem.rootdirectory == "/home/u/.local/share/fastreg"
    assert cfg.http.addr == "127.0.0.1:5000"   # loopback, unlike Distribution's ":5000"
    assert listen_address(cfg) == ("127.0.0.1", 5000)
    assert cfg.http.secret is None
    assert (cfg.http.host, cfg.http.prefix, cfg.http.relativeurls) == ("", "", False)
    assert (cfg.http.tls.certificate, cfg.http.tls.key, cfg.http.tls.clientcas) == ("", "", [])
    assert cfg.log.level == "info"
    assert cfg.storage.delete.enabled is False
    assert cfg.storage.maintenance.readonly.enabled is False
    f = cfg.fastreg
    assert (f.workers, f.httpmode, f.digest.blake3, f.fsync) == (None, "auto", False, True)
    assert (f.catalog.maxentries, f.manifest.maxsize, f.tags.maxentries) == (1000, 4 * 1024 * 1024, 10000)
    assert cfg.auth.type is None
    xdg = load_config(None, env={"XDG_DATA_HOME": "/data/xdg"})
    assert xdg.storage.filesystem is not None and xdg.storage.filesystem.rootdirectory == "/data/xdg/fastreg"


def test_default_rootdirectory_constant() -> None:
    assert DEFAULT_ROOTDIRECTORY.endswith("fastreg")
    assert Path(DEFAULT_ROOTDIRECTORY).is_absolute()


def test_empty_file_and_empty_sections(tmp_path: Path) -> None:
    assert load(tmp_path, "").http.addr == "127.0.0.1:5000"
    cfg = load(tmp_path, "http:\nstorage:\n  delete:\n")
    assert cfg.http.addr == "127.0.0.1:5000" and cfg.storage.driver_name == "filesystem"


# -- environment overrides -----------------------------------------------------------------------

def test_env_overrides_nested_keys_with_yaml_scalars() -> None:
    cfg = load_config(None, env={
        "FASTREG_HTTP_ADDR": "127.0.0.1:6000",
        "FASTREG_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/data",
        "FASTREG_STORAGE_DELETE_ENABLED": "true",
        "FASTREG_FASTREG_WORKERS": "4",
        "FASTREG_FASTREG_DIGEST_BLAKE3": "true",
        "FASTREG_HTTP_DRAINTIMEOUT": "1m30s",
        "FASTREG_HTTP_TLS_CLIENTCAS": "[/a.pem, /b.pem]",
    })
    assert listen_address(cfg) == ("127.0.0.1", 6000)
    assert cfg.storage.filesystem is not None and cfg.storage.filesystem.rootdirectory == "/data"
    assert cfg.storage.delete.enabled is True
    assert cfg.fastreg.workers == 4
    assert cfg.fastreg.digest.blake3 is True
    assert cfg.http.draintimeout == 90.0
    assert cfg.http.tls.clientcas == ["/a.pem", "/b.pem"]


def test_env_override_beats_the_file(tmp_path: Path) -> None:
    cfg = load(tmp_path, "http:\n  addr: :5000\n  secret: fromfile\nstorage:\n  delete:\n    enabled: true\n",
               env={"FASTREG_HTTP_ADDR": ":7000", "FASTREG_STORAGE_DELETE_ENABLED": "false"})
    assert cfg.http.addr == ":7000"
    assert cfg.http.secret == "fromfile"
    assert cfg.storage.delete.enabled is False


def test_env_string_keys_take_text_verbatim() -> None:
    # "yes", "0123" and "1.10" would be a bool, an int and a float as YAML; a string key keeps the text
    cfg = load_config(None, env={"FASTREG_HTTP_SECRET": "yes", "FASTREG_HTTP_HOST": "0123",
                                 "FASTREG_HTTP_PREFIX": "1.10"})
    assert (cfg.http.secret, cfg.http.host, cfg.http.prefix) == ("yes", "0123", "1.10")


def test_env_short_form_for_the_fastreg_section() -> None:
    cfg = load_config(None, env={"FASTREG_WORKERS": "3", "FASTREG_HTTPMODE": "1",
                                 "FASTREG_MANIFEST_MAXSIZE": "1024", "FASTREG_TAGS_MAXENTRIES": "5"})
    assert (cfg.fastreg.workers, cfg.fastreg.httpmode) == (3, "1")
    assert (cfg.fastreg.manifest.maxsize, cfg.fastreg.tags.maxentries) == (1024, 5)
    # "catalog" is also Distribution's top-level section: the long form is the unambiguous one
    assert load_config(None, env={"FASTREG_FASTREG_CATALOG_MAXENTRIES": "9"}).fastreg.catalog.maxentries == 9


def test_env_is_case_insensitive_and_matches_existing_map_keys(tmp_path: Path) -> None:
    cfg = load(tmp_path, "http:\n  headers:\n    X-Content-Type-Options: [nosniff]\nlog:\n  fields:\n"
                         "    service_name: registry\n",
               env={"fastreg_http_addr": ":6001", "FASTREG_LOG_FIELDS_SERVICE_NAME": "fastreg",
                    "FASTREG_LOG_FIELDS_ENVIRONMENT": "staging"})
    assert cfg.http.addr == ":6001"
    assert cfg.log.fields == {"service_name": "fastreg", "environment": "staging"}


def test_env_walks_into_raw_driver_parameters(tmp_path: Path) -> None:
    cfg = load(tmp_path, "storage:\n  gcs:\n    bucket: b\n    credentials:\n      project_id: p\n",
               env={"FASTREG_STORAGE_GCS_CREDENTIALS_PROJECT_ID": "q", "FASTREG_STORAGE_GCS_CHUNKSIZE": "5242880"})
    assert cfg.storage.gcs == {"bucket": "b", "credentials": {"project_id": "q"}, "chunksize": 5242880}


def test_env_switches_the_driver_but_a_second_driver_is_an_error(tmp_path: Path) -> None:
    text = "storage:\n  filesystem:\n    rootdirectory: /x\n  delete:\n    enabled: true\n"
    cfg = load(tmp_path, text, env={"FASTREG_STORAGE": "s3", "FASTREG_STORAGE_S3_BUCKET": "b"})
    assert cfg.storage.driver_name == "s3"
    assert cfg.storage.s3 == {"bucket": "b"}
    assert cfg.storage.filesystem is None
    assert cfg.storage.delete.enabled is True
    with pytest.raises(ConfigError, match="exactly one storage driver.*filesystem, s3"):
        load(tmp_path, text, env={"FASTREG_STORAGE_S3_BUCKET": "b"})


def test_registry_variables_are_honoured_and_fastreg_wins(tmp_path: Path) -> None:
    cfg = load(tmp_path, "http:\n  addr: :5000\n", env={
        "REGISTRY_HTTP_ADDR": ":7000", "FASTREG_HTTP_ADDR": ":8000",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true", "REGISTRY_HTTP_SECRET": "s3cr3t",
    })
    assert cfg.http.addr == ":8000"
    assert cfg.storage.delete.enabled is True
    assert cfg.http.secret == "s3cr3t"


def test_unknown_fastreg_env_path_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"FASTREG_HTTP_ADRR.*http\.adrr.*valid keys here: addr"):
        load_config(None, env={"FASTREG_HTTP_ADRR": ":5000"})
    with pytest.raises(ConfigError, match="FASTREG_NOPE"):
        load_config(None, env={"FASTREG_NOPE": "1"})
    with pytest.raises(ConfigError, match="has no sub-keys"):
        load_config(None, env={"FASTREG_HTTP_ADDR_PORT": "1"})
    with pytest.raises(ConfigError, match="fastreg.workers"):
        load_config(None, env={"FASTREG_WORKERS": "lots"})


def test_unknown_registry_env_path_is_a_warning(warnings_log: pytest.LogCaptureFixture) -> None:
    # Kubernetes injects REGISTRY_PORT etc. for a service named "registry"; Distribution ignores them
    cfg = load_config(None, env={"REGISTRY_PORT": "tcp://10.0.0.1:5000", "REGISTRY_SERVICE_HOST": "10.0.0.1"})
    assert cfg.http.addr == "127.0.0.1:5000"
    assert "REGISTRY_PORT" in messages(warnings_log)


def test_process_variables_are_not_overrides() -> None:
    cfg = load_config(None, env={"FASTREG_NO_EXTENSIONS": "1", "FASTREG_CONFIG": "/etc/x.yml",
                                 "FASTREG_RESOLVED_CONFIG": "{}", "FASTREG_SECRET": "abc",
                                 "FASTREG_PORT": "tcp://10.0.0.2:5000", "FASTREG_SERVICE_HOST": "10.0.0.2"})
    assert cfg == load_config(None, env={})


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTREG_HTTP_ADDR", "127.0.0.1:6123")
    assert load_config().http.addr == "127.0.0.1:6123"


# -- durations and addresses ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("300ms", 0.3), ("10s", 10.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("2m3.5s", 123.5),
    ("168h", 604800.0), ("0", 0.0), ("-5s", -5.0), ("+1m", 60.0), ("10us", 1e-5), ("10µs", 1e-5),
    ("1ns", 1e-9), (".5s", 0.5),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1h 30m", "--1s", ".s", "1.5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_integer_durations_are_nanoseconds(tmp_path: Path) -> None:
    cfg = load(tmp_path, "http:\n  draintimeout: 2000000000\nproxy:\n  ttl: 0\n")
    assert cfg.http.draintimeout == 2.0
    assert cfg.proxy.ttl == 0.0
    assert load_config(None, env={}).proxy.ttl is None


@pytest.mark.parametrize(("addr", "expected"), [
    (":5000", ("0.0.0.0", 5000)), ("[::1]:5000", ("::1", 5000)), ("localhost:5000", ("localhost", 5000)),
    ("0.0.0.0:443", ("0.0.0.0", 443)), ("[::]:5001", ("::", 5001)),
])
def test_listen_address(addr: str, expected: tuple[str, int]) -> None:
    assert listen_address(load_config(None, env={"FASTREG_HTTP_ADDR": addr})) == expected


@pytest.mark.parametrize("addr", ["5000", "localhost", "::1:5000", "host:99999", "host:http"])
def test_bad_addresses(addr: str) -> None:
    with pytest.raises(ConfigError, match="http.addr"):
        load_config(None, env={"FASTREG_HTTP_ADDR": addr})


# -- worker processes ----------------------------------------------------------------------------

def test_json_round_trip_for_workers(tmp_path: Path) -> None:
    cfg = load(tmp_path, """\
        version: 0.1
        log:
          level: debug
          hooks:
          - type: mail
            options: {from: a@example.com, to: [b@example.com]}
        storage:
          s3: {bucket: b, region: eu-west-1}
          delete: {enabled: true}
          maintenance: {readonly: {enabled: true}, uploadpurging: {age: 2h}}
        http:
          addr: "[::1]:5001"
          secret: s
          headers: {X-A: [b]}
          tls: {certificate: /c.pem, key: /k.pem, clientcas: [/ca.pem]}
        notifications:
          endpoints: [{name: n, url: "http://x", timeout: 500ms}]
        fastreg: {workers: 2, httpmode: "2", digest: {blake3: true}}
        """)
    data = dump_config(cfg)
    assert isinstance(data, bytes)
    back = config_from_json(data)
    assert back == cfg
    assert back.storage.driver_name == "s3"
    assert back.log.hooks[0].options.from_ == "a@example.com"
    assert msgspec.json.decode(data)["log"]["hooks"][0]["options"]["from"] == "a@example.com"
    assert back.to_dict()["storage"]["maintenance"]["uploadpurging"]["age"] == 7200.0
    with pytest.raises(ConfigError):
        config_from_json(b'{"http": {"adr": ":1"}}')


def test_config_is_frozen() -> None:
    cfg = load_config(None, env={})
    with pytest.raises(AttributeError):
        cfg.http.addr = ":1"  # type: ignore[misc]


# -- the shipped example -------------------------------------------------------------------------

def test_example_config_loads(warnings_log: pytest.LogCaptureFixture) -> None:
    cfg = load_config(REPO_ROOT / "examples" / "config.yml", env={})
    assert cfg.storage.driver_name == "filesystem"
    assert cfg.fastreg.httpmode == "auto"
    assert cfg.storage.delete.enabled is True
