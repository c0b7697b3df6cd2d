"""Typed configuration: Distribution's ``config.yml``, unchanged, plus one ``fastreg:`` section.

Compatibility rules (a config that runs Debian's ``docker-registry`` 2.8.x, or Distribution 3,
also runs fastreg):

* **Same file.** Keys are spelled exactly as Distribution spells them (lower case, no ``_``).
  ``version`` must be ``"0.1"`` when given.  ``storage: inmemory`` and ``auth: silly`` (a bare
  name instead of a mapping) are accepted, as Distribution accepts them.
* **Three kinds of key.**
  1. Keys fastreg uses: typed below.
  2. Keys Distribution defines that fastreg does not use (yet): accepted, typed where cheap,
     and each one present is named in a warning on the ``fastreg.config`` logger
     (see ``UNUSED_KEYS``; remove a line there when its feature lands).
  3. Keys nobody defines: rejected with ``ConfigError`` naming the dotted key path and the
     keys valid at that level.  (Distribution silently ignores them; a typo in a registry
     config should not silently open or move a registry.)
  fastreg's own settings live under the top-level ``fastreg:`` section only.
* **Storage** holds exactly one driver section (filesystem, inmemory, s3, azure, gcs; 2.8's
  swift and oss are recognised) next to the non-driver sections delete, maintenance, cache,
  redirect, tag.  Two drivers is an error.  No driver at all means filesystem under
  ``DEFAULT_ROOTDIRECTORY`` (``$XDG_DATA_HOME/fastreg`` or ``~/.local/share/fastreg``), so
  ``fastreg serve`` alone works.  Drivers other than filesystem/inmemory keep their raw mapping.
* **Durations** are Go duration strings (``"300ms"``, ``"1h30m"``) or integers, which Go's
  YAML decoder takes as nanoseconds; they are stored as float seconds.
* **Environment overrides**, as Distribution's ``REGISTRY_<PATH>``: ``FASTREG_HTTP_ADDR``,
  ``FASTREG_STORAGE_FILESYSTEM_ROOTDIRECTORY``, ``FASTREG_FASTREG_WORKERS`` (or the short
  ``FASTREG_WORKERS`` when the key is not also a top-level section).  ``REGISTRY_<PATH>`` is
  honoured too; ``FASTREG_`` wins.  Names match key paths case-insensitively; because map keys
  may contain ``_``, the path is found by walking the schema, trying the longest key first.
  Values are YAML (``true``, ``4``, ``[a, b]``) except where the key is a string, which takes the
  text verbatim.  ``FASTREG_STORAGE=s3`` switches the driver (keeping delete, maintenance, ...);
  setting keys of a second driver while the file names another is the two-driver error.  An unknown
  ``FASTREG_`` path is an error; an unknown ``REGISTRY_`` path is a
  warning (Distribution ignores them, and Kubernetes injects ``REGISTRY_PORT`` & co. for a
  service named "registry").  Process variables that are not config (``NON_CONFIG_ENV``) and
  Kubernetes service links (``FASTREG_PORT...``, ``FASTREG_SERVICE_...``) are skipped.
* **Differences on purpose:** ``http.addr`` defaults to ``127.0.0.1:5000`` (Distribution: ``:5000``,
  every interface); ``http.net: unix`` is refused (fastreg listens on TCP).

Workers receive the resolved config as JSON (``dump_config`` / ``config_from_json``).
"""
from __future__ import annotations

import functools
import logging
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import msgspec
import yaml

from .durations import format_duration, parse_duration

__all__ = [
    "DEFAULT_ROOTDIRECTORY",
    "NON_CONFIG_ENV",
    "UNUSED_KEYS",
    "Config",
    "ConfigError",
    "config_from_json",
    "debug_address",
    "dump_config",
    "format_duration",
    "listen_address",
    "load_config",
    "parse_duration",
]

log = logging.getLogger("fastreg.config")


class ConfigError(ValueError):
    """An invalid configuration (file or environment); the message names the dotted key path."""


def _default_rootdirectory(env: Mapping[str, str]) -> str:
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME") or Path.home()) / ".local" / "share"
    return str(base / "fastreg")


DEFAULT_ROOTDIRECTORY = _default_rootdirectory(os.environ)

# FASTREG_ variables that are process settings, not config keys: never overrides.
NON_CONFIG_ENV = frozenset({"FASTREG_NO_EXTENSIONS", "FASTREG_CONFIG", "FASTREG_RESOLVED_CONFIG",
                            "FASTREG_SECRET", "FASTREG_INSTANCE_ID"})
_K8S_SERVICE_LINK = re.compile(r"^FASTREG_(PORT(_.*)?|SERVICE_.*)$")

_UNUSED = "defined by Distribution but not used by fastreg; ignored"
# Keys Distribution defines that fastreg accepts but does not act on (yet).  Each one present in
# the config (file or environment) is named in a warning.  Remove a line when its feature lands.
UNUSED_KEYS: dict[str, str] = {
    "log.hooks": _UNUSED,
    "reporting": _UNUSED,
    "http.tls.ciphersuites": _UNUSED,
    "http.tls.letsencrypt": _UNUSED,
    "redis": "used only with storage.cache.blobdescriptor: redis",
    "validation.enabled": "deprecated by Distribution; validation is on unless validation.disabled",
    # storage.cache.blobdescriptor: redis is implemented (storage/driver/wrappers/rediscache.py); inmemory is not.
    # fastreg keeps no in-process blob descriptor cache: each blob HEAD/GET stats the repository's
    # layer link and the blob's data (manifests are cached by digest, tag lists by directory mtime,
    # in every worker), where Distribution answers repeated blob HEADs from a per-process map
    # (which another process's delete does not clear).
    "storage.cache": "blobdescriptor: inmemory is not implemented; ignored (blobdescriptor: redis is a shared cache)",
}
# Like Distribution 3, which removed them: pushing a schema1 manifest answers 400
# MANIFEST_INVALID, schema2 manifests are never converted for old clients (signingkeyfile is
# unused), and schema1 manifests already stored by Distribution 2.x are served as they are.
SCHEMA1_NOTE = "fastreg does not accept schema1 manifests (a push answers 400); stored ones are served as they are"


# -- durations ----------------------------------------------------------------------------------

class _DurationMarker:
    """Annotated metadata: the field takes a Go duration (string or int nanoseconds)."""


Duration = Annotated[float, _DurationMarker]  # seconds


class _SizeMarker:
    """Annotated metadata: the field takes a size in bytes (an integer, or "10GiB", "500 MB")."""


ByteSize = Annotated[int, _SizeMarker]


class _PatternsMarker:
    """Annotated metadata: a list of patterns (globs) that must be written as a list.  Elsewhere a
    single string stands for a one-element list (as environment values need); here a string is
    refused, so that ``tags: v*`` is not read as something else than meant."""


Patterns = Annotated[list[str], _PatternsMarker]
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
               "t": 1000**4, "tb": 1000**4, "p": 1000**5, "pb": 1000**5, "kib": 1024, "mib": 1024**2,
               "gib": 1024**3, "tib": 1024**4, "pib": 1024**5}


def parse_size(text: str) -> int:
    """``"10GiB"`` → 10737418240: an integer or decimal number of bytes and a unit (B, KB, MB, GB, TB,
    PB: powers of 1000; KiB, MiB, GiB, TiB, PiB: powers of 1024; case-insensitive)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (bytes, or a number and a unit: 500MB, 10GiB)")
    return int(float(m.group(1)) * _SIZE_UNITS[unit]) if "." in m.group(1) else int(m.group(1)) * _SIZE_UNITS[unit]


# -- the schema ---------------------------------------------------------------------------------

class _S(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A config section: frozen, every key known."""


class LogAccessLog(_S, frozen=True):
    disabled: bool = False


class SMTP(_S, frozen=True):
    addr: str = ""
    username: str = ""
    password: str = ""
    insecure: bool = False


class MailOptions(_S, frozen=True):
    smtp: SMTP = msgspec.field(default_factory=SMTP)
    from_: str = msgspec.field(default="", name="from")
    to: list[str] = msgspec.field(default_factory=list)


class LogHook(_S, frozen=True):
    disabled: bool = False
    type: str = ""
    levels: list[str] = msgspec.field(default_factory=list)
    options: MailOptions = msgspec.field(default_factory=MailOptions)


LOG_LEVELS = ("error", "warn", "info", "debug")
LOG_FORMATTERS = ("", "text", "json", "logstash")


class Log(_S, frozen=True):
    level: str = "info"   # error | warn | info | debug (Distribution's set)
    formatter: str = ""
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    accesslog: LogAccessLog = msgspec.field(default_factory=LogAccessLog)
    hooks: list[LogHook] = msgspec.field(default_factory=list)
    reportcaller: bool = False


# storage

class Filesystem(_S, frozen=True):
    rootdirectory: str = ""   # filled with DEFAULT_ROOTDIRECTORY when empty
    maxthreads: int = 100
    # fastreg: the bytes of a file past this size bypass the page cache (direct I/O, or written
    # behind: fastreg/storage/driver/backends/filesystem.py); 0 keeps every page cached
    dropbehind: int = 8 << 20
    directio: bool = True     # false: past dropbehind, write behind instead of O_DIRECT
    # fastreg: durable writes wait for one syncfs(2) shared by every request waiting, instead of
    # fsyncs of their own files (the same guarantees; for a filesystem holding little else; Linux)
    groupsync: bool = False


class InMemory(_S, frozen=True):
    pass


class StorageDelete(_S, frozen=True):
    enabled: bool = False


class UploadPurging(_S, frozen=True):
    enabled: bool = True
    age: Duration = 168 * 3600.0
    interval: Duration = 24 * 3600.0
    dryrun: bool = False


class ReadOnly(_S, frozen=True):
    enabled: bool = False


class Maintenance(_S, frozen=True):
    uploadpurging: UploadPurging = msgspec.field(default_factory=UploadPurging)
    readonly: ReadOnly = msgspec.field(default_factory=ReadOnly)


class StorageCache(_S, frozen=True):
    blobdescriptor: str = ""
    blobdescriptorsize: int = 0


class StorageRedirect(_S, frozen=True):
    disable: bool = False


class StorageTag(_S, frozen=True):
    concurrencylimit: int = 0


DRIVERS = ("filesystem", "inmemory", "s3", "azure", "gcs", "swift", "oss", "faulty")


class Storage(_S, frozen=True):
    filesystem: Filesystem | None = None
    inmemory: InMemory | None = None
    s3: dict[str, Any] | None = None
    azure: dict[str, Any] | None = None
    gcs: dict[str, Any] | None = None
    swift: dict[str, Any] | None = None     # Distribution 2.8 only
    oss: dict[str, Any] | None = None       # Distribution 2.8 only
    faulty: dict[str, Any] | None = None    # fault injection (tests; storage/driver/wrappers/faulty.py)
    delete: StorageDelete = msgspec.field(default_factory=StorageDelete)
    maintenance: Maintenance = msgspec.field(default_factory=Maintenance)
    cache: StorageCache = msgspec.field(default_factory=StorageCache)
    redirect: StorageRedirect = msgspec.field(default_factory=StorageRedirect)
    tag: StorageTag = msgspec.field(default_factory=StorageTag)

    @property
    def driver_name(self) -> str:
        """The one configured driver: "filesystem", "inmemory", "s3", ..."""
        return next(d for d in DRIVERS if getattr(self, d) is not None)

    @property
    def driver_params(self) -> Any:
        return getattr(self, self.driver_name)

    @property
    def filesystem_root(self) -> str:
        """``storage.filesystem.rootdirectory`` (for code that runs on the filesystem driver only)."""
        if self.filesystem is None:
            raise ConfigError(f"storage: the {self.driver_name} driver has no root directory")
        return self.filesystem.rootdirectory


# auth

class Htpasswd(_S, frozen=True):
    realm: str = ""
    path: str = ""


class Token(_S, frozen=True):
    realm: str = ""
    service: str = ""
    issuer: str = ""
    rootcertbundle: str = ""
    jwks: str = ""
    autoredirect: bool = False
    autoredirectpath: str = ""
    signingalgorithms: list[str] = msgspec.field(default_factory=list)


class Silly(_S, frozen=True):
    realm: str = ""
    service: str = ""


class NoAuth(_S, frozen=True):
    pass


AUTH_TYPES = ("htpasswd", "token", "silly", "none")


class Auth(_S, frozen=True):
    htpasswd: Htpasswd | None = None
    token: Token | None = None
    silly: Silly | None = None
    none: NoAuth | None = None

    @property
    def type(self) -> str | None:
        """"htpasswd" | "token" | "silly" | "none", or None when no auth section is given."""
        return next((t for t in AUTH_TYPES if getattr(self, t) is not None), None)


# middleware, reporting

class Middleware(_S, frozen=True):
    name: str = ""
    disabled: bool = False
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class Bugsnag(_S, frozen=True):
    apikey: str = ""
    releasestage: str = ""
    endpoint: str = ""


class NewRelic(_S, frozen=True):
    licensekey: str = ""
    name: str = ""
    verbose: bool = False


class Reporting(_S, frozen=True):
    bugsnag: Bugsnag = msgspec.field(default_factory=Bugsnag)
    newrelic: NewRelic = msgspec.field(default_factory=NewRelic)


# http

class LetsEncrypt(_S, frozen=True):
    cachefile: str = ""
    email: str = ""
    hosts: list[str] = msgspec.field(default_factory=list)
    directoryurl: str = ""


class TLS(_S, frozen=True):
    certificate: str = ""
    key: str = ""
    clientcas: list[str] = msgspec.field(default_factory=list)
    minimumtls: str = ""
    ciphersuites: list[str] = msgspec.field(default_factory=list)
    letsencrypt: LetsEncrypt = msgspec.field(default_factory=LetsEncrypt)


class Prometheus(_S, frozen=True):
    enabled: bool = False
    path: str = "/metrics"


class Debug(_S, frozen=True):
    addr: str = ""
    prometheus: Prometheus = msgspec.field(default_factory=Prometheus)


class HTTP2(_S, frozen=True):
    disabled: bool = False


class H2C(_S, frozen=True):
    enabled: bool = False


DEFAULT_ADDR = "127.0.0.1:5000"


class HTTP(_S, frozen=True):
    addr: str = DEFAULT_ADDR
    net: str = "tcp"
    prefix: str = ""
    host: str = ""
    secret: str | None = None
    relativeurls: bool = False
    draintimeout: Duration = 0.0
    headers: dict[str, list[str]] = msgspec.field(default_factory=dict)
    tls: TLS = msgspec.field(default_factory=TLS)
    debug: Debug = msgspec.field(default_factory=Debug)
    http2: HTTP2 = msgspec.field(default_factory=HTTP2)
    h2c: H2C = msgspec.field(default_factory=H2C)


# notifications

class Ignore(_S, frozen=True):
    mediatypes: list[str] = msgspec.field(default_factory=list)
    actions: list[str] = msgspec.field(default_factory=list)


class Endpoint(_S, frozen=True):
    name: str = ""
    disabled: bool = False
    url: str = ""
    headers: dict[str, list[str]] = msgspec.field(default_factory=dict)
    timeout: Duration = 0.0
    threshold: int = 0
    backoff: Duration = 0.0
    ignoredmediatypes: list[str] = msgspec.field(default_factory=list)
    ignore: Ignore = msgspec.field(default_factory=Ignore)


class Events(_S, frozen=True):
    includereferences: bool = False


class Notifications(_S, frozen=True):
    events: Events = msgspec.field(default_factory=Events)
    endpoints: list[Endpoint] = msgspec.field(default_factory=list)


# redis: 2.8's keys plus Distribution 3's (go-redis UniversalOptions, inlined)

class RedisTLS(_S, frozen=True):
    enabled: bool = False
    certificate: str = ""
    key: str = ""
    clientcas: list[str] = msgspec.field(default_factory=list)


class RedisPool(_S, frozen=True):
    maxidle: int = 0
    maxactive: int = 0
    idletimeout: Duration = 0.0


class Redis(_S, frozen=True):
    addr: str = ""
    addrs: list[str] = msgspec.field(default_factory=list)
    username: str = ""
    password: str = ""
    db: int = 0
    clientname: str = ""
    dialtimeout: Duration = 0.0
    readtimeout: Duration = 0.0
    writetimeout: Duration = 0.0
    maxretries: int = 0
    poolsize: int = 0
    minidleconns: int = 0
    maxidleconns: int = 0
    maxactiveconns: int = 0
    connmaxidletime: Duration = 0.0
    connmaxlifetime: Duration = 0.0
    mastername: str = ""
    tls: RedisTLS = msgspec.field(default_factory=RedisTLS)
    pool: RedisPool = msgspec.field(default_factory=RedisPool)


# health

class FileChecker(_S, frozen=True):
    file: str = ""
    interval: Duration = 0.0
    threshold: int = 0


class HTTPChecker(_S, frozen=True):
    uri: str = ""
    headers: dict[str, list[str]] = msgspec.field(default_factory=dict)
    statuscode: int = 200
    timeout: Duration = 0.0
    interval: Duration = 0.0
    threshold: int = 0


class TCPChecker(_S, frozen=True):
    addr: str = ""
    timeout: Duration = 0.0
    interval: Duration = 0.0
    threshold: int = 0


class StorageDriverCheck(_S, frozen=True):
    enabled: bool = False
    interval: Duration = 0.0
    threshold: int = 0


class Health(_S, frozen=True):
    storagedriver: StorageDriverCheck = msgspec.field(default_factory=StorageDriverCheck)
    file: list[FileChecker] = msgspec.field(default_factory=list)
    http: list[HTTPChecker] = msgspec.field(default_factory=list)
    tcp: list[TCPChecker] = msgspec.field(default_factory=list)


# proxy, compatibility, validation, policy, catalog

class Proxy(_S, frozen=True):
    remoteurl: str = ""
    username: str = ""
    password: str = ""
    ttl: Duration | None = None   # Distribution: unset = 7 days, 0 = never expire


class Schema1(_S, frozen=True):
    signingkeyfile: str = ""
    enabled: bool = False


class Compatibility(_S, frozen=True):
    schema1: Schema1 = msgspec.field(default_factory=Schema1)


class URLRules(_S, frozen=True):
    allow: list[str] = msgspec.field(default_factory=list)
    deny: list[str] = msgspec.field(default_factory=list)


class Platform(_S, frozen=True):
    architecture: str = ""
    os: str = ""


class IndexValidation(_S, frozen=True):
    platforms: str = "all"   # all | none | list
    platformlist: list[Platform] = msgspec.field(default_factory=list)


class ManifestValidation(_S, frozen=True):
    urls: URLRules = msgspec.field(default_factory=URLRules)
    indexes: IndexValidation = msgspec.field(default_factory=IndexValidation)


class Validation(_S, frozen=True):
    enabled: bool = False    # deprecated by Distribution in favour of disabled
    disabled: bool = False
    manifests: ManifestValidation = msgspec.field(default_factory=ManifestValidation)


class RepositoryPolicy(_S, frozen=True):
    classes: list[str] = msgspec.field(default_factory=list)


class Policy(_S, frozen=True):
    repository: RepositoryPolicy = msgspec.field(default_factory=RepositoryPolicy)


class Catalog(_S, frozen=True):
    maxentries: int = 0   # Distribution 3; <= 0 means its default, 1000


# fastreg's own section

class DigestOptions(_S, frozen=True):
    blake3: bool = False   # accept blake3 digests (not in Distribution)


class CatalogLimits(_S, frozen=True):
    maxentries: int = 1000


class ManifestLimits(_S, frozen=True):
    maxsize: int = 4 * 1024 * 1024


class TagLimits(_S, frozen=True):
    maxentries: int = 10000


class CacheLimits(_S, frozen=True):
    # per worker process, in bytes (each entry is charged its size plus a fixed overhead)
    manifestbytes: int = 32 << 20     # manifest bodies by digest; one larger than an eighth is not kept
    referrerbytes: int = 8 << 20      # referrer descriptors (artifactType, annotations) by digest
    tagbytes: int = 16 << 20          # tag lists by repository (filesystem storage only)
    catalogbytes: int = 16 << 20      # the repository list (a larger one is walked for each request)


class ReferrerLimits(_S, frozen=True):
    pagebytes: int = 1 << 20          # encoded descriptors per referrers page (at least one); Link: next


class HTTPTimeouts(_S, frozen=True):
    headertimeout: Duration = 30.0     # a client must send its request head within this (HTTP/1.1)
    bodytimeout: Duration = 60.0       # longest wait for the next bytes of a request body (0: none)


class AccessRule(_S, frozen=True):
    repository: str = "**"                       # glob: * within a component, ** across
    pull: list[str] = msgspec.field(default_factory=list)     # principals: user, @group,
    push: list[str] = msgspec.field(default_factory=list)     # authenticated, anonymous
    delete: list[str] = msgspec.field(default_factory=list)


class AccessPolicy(_S, frozen=True):
    groups: dict[str, list[str]] = msgspec.field(default_factory=dict)   # group → users
    catalog: list[str] = msgspec.field(default_factory=list)            # who may list /v2/_catalog
    rules: list[AccessRule] = msgspec.field(default_factory=list)


class TokenService(_S, frozen=True):
    path: str = "/token"                 # served on the registry's own listener
    key: str = ""                        # PEM private key that signs tokens (ECDSA or RSA)
    certificate: str = ""                # its certificate (+ chain): sent as x5c
    issuer: str = ""                     # default: auth.token.issuer
    service: str = ""                    # default: auth.token.service
    htpasswd: str = ""                   # users; default: auth.htpasswd.path
    expiration: Duration = 300.0         # token lifetime
    refreshexpiration: Duration = 30 * 86400.0   # refresh tokens (docker login's identity token)
    anonymous: bool = True               # answer requests without credentials (anonymous grants)


class RateBucket(_S, frozen=True):
    rate: float = 0.0                    # requests per second (0: no limit)
    burst: int = 0                       # largest burst (default: one second's worth, at least 1)


class RateLimits(_S, frozen=True):
    client: RateBucket = msgspec.field(default_factory=RateBucket)   # per client address
    user: RateBucket = msgspec.field(default_factory=RateBucket)     # per authenticated user


class FastregAuth(_S, frozen=True):
    access: AccessPolicy | None = None
    tokenservice: TokenService | None = None
    ratelimit: RateLimits = msgspec.field(default_factory=RateLimits)


class NotifyOptions(_S, frozen=True):
    outbox: str = ""               # directory of the durable outbox; "" = local state dir (see fastreg.notify)
    maxevents: int = 100000        # outbox bound: older events are dropped (and counted) beyond it
    allowprivate: bool = False     # allow webhook targets on loopback/private/link-local addresses
    batch: int = 1                 # events per POST (Distribution sends 1)
    maxbackoff: Duration = 300.0   # longest wait between two tries of an endpoint
    pollinterval: Duration = 0.5   # how often the delivering worker looks for other workers' events


class GCOptions(_S, frozen=True):
    graceperiod: Duration = 3600.0   # blobs/manifests/links younger than this are never collected
    interval: Duration = 0.0         # > 0: the server runs a collection this often (one worker)
    deleteuntagged: bool = False     # the background collection also removes untagged manifests


class ProxyUpstream(Proxy, frozen=True):
    # hosts besides remoteurl's own that this upstream may send the cache to without the address
    # guard (a CDN its blobs redirect to, a token realm on a private address), and the only realms
    # other than its own origin that receive its username and password
    allowedhosts: list[str] = msgspec.field(default_factory=list)


class ProxyUpstreams(_S, frozen=True):
    # name prefix → upstream: /v2/<prefix>/<repo>/... is a pull-through cache of <remoteurl>/v2/<repo>/...
    upstreams: dict[str, ProxyUpstream] = msgspec.field(default_factory=dict)
    allowedhosts: list[str] = msgspec.field(default_factory=list)    # the same, for proxy.remoteurl
    # total time of one exchange with an upstream (manifest, tag list, token, HEAD, a blob's
    # headers); a blob's body gets this plus one second per 256 KiB of its size
    deadline: Duration = 60.0
    # this replica's URL as the other replicas sharing its storage reach it: a blob miss is then
    # fetched from upstream once for the whole cluster (fastreg/proxy/peers.py)
    peerurl: str = ""


class HistoryOptions(_S, frozen=True):
    pulls: bool = False                  # record when each tag and manifest is pulled (fastreg.retention.pulls)
    flushinterval: Duration = 1.0        # how often each worker writes the pulls it gathered


class RetentionKeep(_S, frozen=True):
    lastpushed: int = 0                  # the N most recently pushed tags (ties at the Nth are kept)
    pushedwithin: Duration = 0.0         # tags pushed less than this long ago
    lastpulled: int = 0                  # the N most recently pulled tags (needs fastreg.history.pulls)
    pulledwithin: Duration = 0.0         # tags pulled less than this long ago (needs fastreg.history.pulls)
    tags: Patterns = msgspec.field(default_factory=list)     # tag globs always kept: latest, v*


class RetentionPolicy(_S, frozen=True):
    repository: str = ""                 # glob (the access policy's syntax): * within a component, ** across
    keep: RetentionKeep = msgspec.field(default_factory=RetentionKeep)
    untagged: Duration | None = None     # delete manifests no kept tag reaches once older than this; unset: keep


class RetentionOptions(_S, frozen=True):
    interval: Duration = 0.0             # > 0: the server applies the policies this often (one worker)
    dryrun: bool = False                 # the scheduled run only logs what it would delete
    policies: list[RetentionPolicy] = msgspec.field(default_factory=list)   # the first match applies


class ImmutabilityRule(_S, frozen=True):
    repository: str = ""                 # glob, as in the access policy
    tags: Patterns = msgspec.field(default_factory=list)     # tag globs that can be neither moved nor deleted


class ImmutabilityOptions(_S, frozen=True):
    rules: list[ImmutabilityRule] = msgspec.field(default_factory=list)


class QuotaRule(_S, frozen=True):
    repository: str = ""                 # glob, as in the access policy: the repositories it covers, together
    limit: ByteSize = 0                  # bytes their manifests may reference (10GiB, 500MB, or an integer)


class QuotaOptions(_S, frozen=True):
    limit: ByteSize = 0                  # the whole registry; 0: no limit (fastreg.quota)
    rules: list[QuotaRule] = msgspec.field(default_factory=list)


class UIOptions(_S, frozen=True):
    enabled: bool = True           # the read-only web page at /ui/ (fastreg.api.ui)


class Fastreg(_S, frozen=True):
    workers: int | None = None                   # None: one per core
    httpmode: Literal["auto", "1", "2"] = "auto"   # auto = HTTP/1.1 plus h2c
    fsync: bool = True                           # fsync blobs and links before they become visible
    digest: DigestOptions = msgspec.field(default_factory=DigestOptions)
    catalog: CatalogLimits = msgspec.field(default_factory=CatalogLimits)
    manifest: ManifestLimits = msgspec.field(default_factory=ManifestLimits)
    tags: TagLimits = msgspec.field(default_factory=TagLimits)
    referrers: ReferrerLimits = msgspec.field(default_factory=ReferrerLimits)
    cache: CacheLimits = msgspec.field(default_factory=CacheLimits)
    http: HTTPTimeouts = msgspec.field(default_factory=HTTPTimeouts)
    auth: FastregAuth = msgspec.field(default_factory=FastregAuth)
    notifications: NotifyOptions = msgspec.field(default_factory=NotifyOptions)
    gc: GCOptions = msgspec.field(default_factory=GCOptions)
    proxy: ProxyUpstreams = msgspec.field(default_factory=ProxyUpstreams)
    ui: UIOptions = msgspec.field(default_factory=UIOptions)
    history: HistoryOptions = msgspec.field(default_factory=HistoryOptions)
    retention: RetentionOptions = msgspec.field(default_factory=RetentionOptions)
    immutability: ImmutabilityOptions = msgspec.field(default_factory=ImmutabilityOptions)
    quota: QuotaOptions = msgspec.field(default_factory=QuotaOptions)


class Config(_S, frozen=True):
    version: str = "0.1"
    log: Log = msgspec.field(default_factory=Log)
    loglevel: str = ""   # deprecated by Distribution: becomes log.level when that is unset
    storage: Storage = msgspec.field(default_factory=Storage)
    auth: Auth = msgspec.field(default_factory=Auth)
    middleware: dict[str, list[Middleware]] = msgspec.field(default_factory=dict)
    reporting: Reporting = msgspec.field(default_factory=Reporting)
    http: HTTP = msgspec.field(default_factory=HTTP)
    notifications: Notifications = msgspec.field(default_factory=Notifications)
    redis: Redis = msgspec.field(default_factory=Redis)
    health: Health = msgspec.field(default_factory=Health)
    proxy: Proxy = msgspec.field(default_factory=Proxy)
    compatibility: Compatibility = msgspec.field(default_factory=Compatibility)
    validation: Validation = msgspec.field(default_factory=Validation)
    policy: Policy = msgspec.field(default_factory=Policy)
    catalog: Catalog = msgspec.field(default_factory=Catalog)
    fastreg: Fastreg = msgspec.field(default_factory=Fastreg)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


# -- schema walking -----------------------------------------------------------------------------
# The raw YAML is checked and normalised against the Structs above before msgspec converts it,
# so that errors name dotted key paths and Go's conveniences (durations, scalars as strings,
# bare driver names) work.

@functools.cache
def _fields(cls: type[msgspec.Struct]) -> dict[str, tuple[str, Any]]:
    """yaml key -> (attribute, annotated type) for a Struct."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {enc: (attr, hints[attr])
            for attr, enc in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True)}


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _unoptional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_duration(tp: Any) -> bool:
    return typing.get_origin(tp) is Annotated and _DurationMarker in typing.get_args(tp)[1:]


def _is_size(tp: Any) -> bool:
    return typing.get_origin(tp) is Annotated and _SizeMarker in typing.get_args(tp)[1:]


def _is_patterns(tp: Any) -> bool:
    return typing.get_origin(tp) is Annotated and _PatternsMarker in typing.get_args(tp)[1:]


def _is_stringish(tp: Any) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) is Literal and all(isinstance(a, str) for a in typing.get_args(tp))


def _scalar_text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<top level>"


def _hint(cls: type) -> str:
    return "valid keys here: " + ", ".join(sorted(_fields(cls)))


class _Walk:
    """Normalises raw YAML against a type, recording which key paths are present."""

    def __init__(self) -> None:
        self.present: set[str] = set()

    def value(self, v: Any, tp: Any, path: tuple[str, ...]) -> Any:
        tp, optional = _unoptional(tp)
        if v is None:
            # "section:" with nothing under it is an empty section (driver and auth bodies
            # were made {} already by _normalise_named_sections)
            return {} if _is_struct(tp) and not optional else None
        if _is_duration(tp):
            return self.duration(v, path)
        if _is_size(tp):
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise ConfigError(f"{_dotted(path)}: expected a size (bytes, or 500MB, 10GiB), got {v!r}")
            try:
                return v if isinstance(v, int) else parse_size(v)
            except ValueError as exc:
                raise ConfigError(f"{_dotted(path)}: {exc}") from None
        if _is_patterns(tp):
            if not isinstance(v, list):
                one = f" (a single pattern is a list of one: [{v!r}])" if isinstance(v, str) else ""
                raise ConfigError(f"{_dotted(path)}: expected a list of patterns, got {v!r}{one}")
            tp = typing.get_args(tp)[0]
        if _is_struct(tp):
            return self.struct(v, tp, path)
        origin = typing.get_origin(tp)
        if origin is dict:
            if not isinstance(v, Mapping):
                raise ConfigError(f"{_dotted(path)}: expected a mapping, got {v!r}")
            (_, vt) = typing.get_args(tp)
            return {str(k): self.value(x, vt, (*path, str(k))) for k, x in v.items()}
        if origin is list:
            (it,) = typing.get_args(tp)
            if it is str and isinstance(v, (str, int, float, bool)):
                v = [v]              # a single string where Go wants []string
            if not isinstance(v, list):
                raise ConfigError(f"{_dotted(path)}: expected a list, got {v!r}")
            return [self.value(x, it, (*path, str(i))) for i, x in enumerate(v)]
        if _is_stringish(tp) and isinstance(v, (int, float, bool)):
            return _scalar_text(v)   # Go's YAML decodes 5000 into a string field as "5000"
        return v

    def duration(self, v: Any, path: tuple[str, ...]) -> float:
        if isinstance(v, bool):
            raise ConfigError(f"{_dotted(path)}: expected a duration, got {v!r}")
        if isinstance(v, (int, float)):
            return v / 1e9           # Go: an integer time.Duration is nanoseconds
        try:
            return parse_duration(str(v))
        except ValueError as exc:
            raise ConfigError(f"{_dotted(path)}: {exc}") from None

    def struct(self, v: Any, cls: type, path: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(v, Mapping):
            raise ConfigError(f"{_dotted(path)}: expected a mapping, got {v!r}")
        fields = _fields(cls)
        out: dict[str, Any] = {}
        for k, x in v.items():
            key = str(k)
            here = (*path, key)
            if key not in fields:
                raise ConfigError(f"unknown configuration key {_dotted(here)!r}; {_hint(cls)}")
            self.present.add(_dotted(here))
            out[key] = self.value(x, fields[key][1], here)
        return out


def _normalise_named_sections(raw: dict[str, Any]) -> None:
    """``storage: inmemory`` / ``auth: silly`` → ``{name: {}}``; empty driver/auth bodies → {}."""
    for section in ("storage", "auth"):
        v = raw.get(section)
        if isinstance(v, str):
            raw[section] = {v: {}}
        elif isinstance(v, dict):
            for name in (DRIVERS if section == "storage" else AUTH_TYPES):
                if name in v and v[name] is None:
                    v[name] = {}


# -- environment overrides ----------------------------------------------------------------------

class _Unknown(Exception):
    pass


def _env_target(tokens: list[str], tp: Any, node: Any, path: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    """Resolve upper-case name tokens to (key path, leaf type) by walking the schema greedily."""
    tp, _ = _unoptional(tp)
    if not tokens:
        return path, tp
    if _is_struct(tp):
        fields = _fields(tp)
        for n in range(len(tokens), 0, -1):
            key = "_".join(tokens[:n]).lower()
            if key in fields:
                child = node.get(key) if isinstance(node, dict) else None
                return _env_target(tokens[n:], fields[key][1], child, (*path, key))
        raise _Unknown(f"{_dotted((*path, tokens[0].lower()))}; {_hint(tp)}")
    if typing.get_origin(tp) is dict or tp is Any:
        vt = typing.get_args(tp)[1] if typing.get_origin(tp) is dict else Any
        existing = [str(k) for k in node] if isinstance(node, dict) else []
        for n in range(len(tokens), 0, -1):      # an existing key, matched case-insensitively
            joined = "_".join(tokens[:n])
            for k in existing:
                if k.upper() == joined:
                    return _env_target(tokens[n:], vt, node[k], (*path, k))
        if _is_struct(_unoptional(vt)[0]) or typing.get_origin(vt) is dict:
            return _env_target(tokens[1:], vt, None, (*path, tokens[0].lower()))
        return (*path, "_".join(tokens).lower()), vt    # a new leaf key: the rest is its name
    raise _Unknown(f"{_dotted(path)} has no sub-keys (set the whole value as YAML instead)")


def _env_value(text: str, tp: Any, name: str) -> Any:
    tp, _ = _unoptional(tp)
    if _is_stringish(tp):
        return text
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: value is not valid YAML: {exc}") from None


def _set_path(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = raw
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    top = _fields(Config)
    own = _fields(Fastreg)
    for prefix in ("REGISTRY_", "FASTREG_"):      # FASTREG_ last, so it wins
        names = [n for n in env if n.upper().startswith(prefix) and n.upper() not in NON_CONFIG_ENV]
        # shorter paths first: FASTREG_STORAGE=s3 before FASTREG_STORAGE_S3_BUCKET=...
        for name in sorted(names, key=lambda n: (n.count("_"), n)):
            upper = name.upper()
            if prefix == "FASTREG_" and _K8S_SERVICE_LINK.match(upper):
                log.debug("ignoring %s (a Kubernetes service link, not configuration)", name)
                continue
            tokens = [t for t in upper[len(prefix):].split("_")]
            if not all(tokens):
                path_error = f"{name}: malformed variable name"
                if prefix == "FASTREG_":
                    raise ConfigError(path_error)
                log.warning("ignoring environment variable %s", path_error)
                continue
            if prefix == "FASTREG_" and tokens[0].lower() not in top and tokens[0].lower() in own:
                tokens = ["FASTREG", *tokens]   # short form: FASTREG_WORKERS = FASTREG_FASTREG_WORKERS
            try:
                path, leaf = _env_target(tokens, Config, raw, ())
            except _Unknown as exc:
                if prefix == "FASTREG_":
                    raise ConfigError(f"environment variable {name} names no configuration key: {exc}") from None
                log.warning("ignoring environment variable %s: no configuration key %s", name, exc)
                continue
            value = _env_value(env[name], leaf, name)
            if path == ("storage",) and isinstance(value, str) and isinstance(raw.get("storage"), dict):
                # FASTREG_STORAGE=s3 switches the driver and keeps delete, maintenance, ...
                value = {**{k: v for k, v in raw["storage"].items() if k not in DRIVERS}, value: {}}
            _set_path(raw, path, value)
            if path[0] in ("storage", "auth"):
                _normalise_named_sections(raw)


# -- loading ------------------------------------------------------------------------------------

def _read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, "rb") as f:
        try:
            doc = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{os.fspath(path)}: not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{os.fspath(path)}: the configuration must be a YAML mapping")
    return doc


def _check(cfg: Config, raw: dict[str, Any], env: Mapping[str, str]) -> Config:
    """Rules the types cannot express; fills defaults that depend on other keys."""
    if cfg.version not in ("0.1", "0.1.0"):
        raise ConfigError(f"version: unsupported configuration version {cfg.version!r} (expected 0.1)")
    st = cfg.storage
    chosen = [d for d in DRIVERS if getattr(st, d) is not None]
    if len(chosen) > 1:
        raise ConfigError(f"storage: exactly one storage driver may be configured, found {', '.join(chosen)}"
                          " (in the file or the environment)")
    if not chosen or (st.filesystem is not None and not st.filesystem.rootdirectory):
        fs = st.filesystem or Filesystem()
        st = msgspec.structs.replace(st, filesystem=msgspec.structs.replace(
            fs, rootdirectory=_default_rootdirectory(env)))
    if st.faulty is not None:       # the fault-injecting wrapper (tests): its rules, checked now
        from .storage.driver.factory import check_faulty
        try:
            check_faulty(st.faulty)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None
    auths = [a for a in AUTH_TYPES if getattr(cfg.auth, a) is not None]
    if len(auths) > 1:
        raise ConfigError(f"auth: exactly one auth type may be configured, found {', '.join(auths)}")

    level = cfg.log.level.lower()
    if cfg.loglevel:
        log.warning("configuration key 'loglevel' is deprecated (as in Distribution): use log.level")
        if "level" not in (raw.get("log") or {}):
            level = cfg.loglevel.lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log.level: invalid level {level!r}; one of {', '.join(LOG_LEVELS)}")
    if cfg.log.formatter.lower() not in LOG_FORMATTERS:
        raise ConfigError(f"log.formatter: invalid formatter {cfg.log.formatter!r}; one of text, json, logstash")

    if cfg.http.net not in ("", "tcp"):
        raise ConfigError(f"http.net: {cfg.http.net!r} is not supported; fastreg listens on tcp only")
    try:
        _split_addr(cfg.http.addr)
    except ValueError as exc:
        raise ConfigError(f"http.addr: {exc}") from None
    if cfg.http.debug.addr:
        try:
            _split_addr(cfg.http.debug.addr)
        except ValueError as exc:
            raise ConfigError(f"http.debug.addr: {exc}") from None
    if not cfg.http.debug.prometheus.path.startswith("/"):
        raise ConfigError("http.debug.prometheus.path: must start with /")

    _check_middleware(cfg)

    fr = cfg.fastreg
    if fr.workers is not None and fr.workers < 1:
        raise ConfigError("fastreg.workers: must be at least 1 (or null for one per core)")
    given_own = (raw.get("fastreg") or {}).get("catalog") or {}
    if cfg.catalog.maxentries > 0 and "maxentries" not in given_own:
        # Distribution 3's catalog.maxentries, unless fastreg.catalog.maxentries says otherwise
        fr = msgspec.structs.replace(fr, catalog=CatalogLimits(maxentries=cfg.catalog.maxentries))
    for key, url in [("proxy.remoteurl", cfg.proxy.remoteurl)] + [
            (f"fastreg.proxy.upstreams.{k}.remoteurl", u.remoteurl) for k, u in fr.proxy.upstreams.items()] + [
            ("fastreg.proxy.peerurl", fr.proxy.peerurl)]:
        optional = key in ("proxy.remoteurl", "fastreg.proxy.peerurl")
        if (url or not optional) and not re.fullmatch(r"https?://[^/\s]+(/[^\s]*)?", url):
            raise ConfigError(f"{key}: {url!r} is not an http:// or https:// URL")
    for key, hosts in [("fastreg.proxy.allowedhosts", fr.proxy.allowedhosts)] + [
            (f"fastreg.proxy.upstreams.{k}.allowedhosts", u.allowedhosts) for k, u in fr.proxy.upstreams.items()]:
        for host in hosts:
            if not re.fullmatch(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]", host):
                raise ConfigError(f"{key}: {host!r} is not a host name or address (no scheme, port or path)")
    for prefix in fr.proxy.upstreams:
        if not re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", prefix):
            raise ConfigError(f"fastreg.proxy.upstreams.{prefix}: an upstream name is the first component of the "
                              "repository names it serves (lower-case letters, digits, '.', '_', '-')")
    if fr.proxy.deadline <= 0:
        raise ConfigError("fastreg.proxy.deadline: must be positive")
    if fr.http.headertimeout <= 0 or fr.http.bodytimeout < 0:
        raise ConfigError("fastreg.http: headertimeout must be positive and bodytimeout not negative")
    if fr.gc.graceperiod < 0 or fr.gc.interval < 0:
        raise ConfigError("fastreg.gc: graceperiod and interval must not be negative")
    _check_retention(fr)
    for name, value in (("fastreg.catalog.maxentries", fr.catalog.maxentries),
                        ("fastreg.manifest.maxsize", fr.manifest.maxsize),
                        ("fastreg.tags.maxentries", fr.tags.maxentries),
                        ("fastreg.notifications.maxevents", fr.notifications.maxevents),
                        ("fastreg.notifications.batch", fr.notifications.batch)):
        if value < 1:
            raise ConfigError(f"{name}: must be positive")
    return msgspec.structs.replace(cfg, storage=st, log=msgspec.structs.replace(cfg.log, level=level),
                                   loglevel="", fastreg=fr)


_NAME_GLOB = re.compile(r"[a-z0-9._/*?-]+")
_TAG_GLOB = re.compile(r"[A-Za-z0-9_.*?-]+")


def _check_globs(where: str, patterns: Iterable[str], tags: bool) -> None:
    """A repository glob or tag pattern with a character no name (no tag) has can never match:
    refused, so that a regular expression (``^v[0-9]+$``) or a typo does not silently make a rule
    match nothing (an immutability rule protecting nothing, a keep rule keeping nothing)."""
    for p in patterns:
        if p and not (_TAG_GLOB if tags else _NAME_GLOB).fullmatch(p):
            what = "tag" if tags else "repository name"
            allowed = "A-Z a-z 0-9 _ . -" if tags else "a-z 0-9 . _ - /"
            raise ConfigError(f"{where}: {p!r} can never match a {what} (a glob: {allowed}, with * ** ?; "
                              "not a regular expression)")


def _check_retention(fr: Fastreg) -> None:
    """fastreg.retention and fastreg.immutability: one line naming the key that is wrong."""
    if fr.retention.interval < 0:
        raise ConfigError("fastreg.retention.interval: must not be negative")
    if fr.history.flushinterval <= 0:
        raise ConfigError("fastreg.history.flushinterval: must be positive")
    for i, p in enumerate(fr.retention.policies):
        where = f"fastreg.retention.policies.{i}"
        if not p.repository:
            raise ConfigError(f"{where}.repository: a policy needs a repository glob (\"**\" for every repository)")
        k = p.keep
        if min(k.lastpushed, k.pushedwithin, k.lastpulled, k.pulledwithin) < 0 or (
                p.untagged is not None and p.untagged < 0):
            raise ConfigError(f"{where}: lastpushed, pushedwithin, lastpulled, pulledwithin and untagged must not "
                              "be negative")
        if not (k.lastpushed or k.pushedwithin or k.lastpulled or k.pulledwithin or k.tags):
            raise ConfigError(f"{where}.keep: keeps no tag at all; give lastpushed, pushedwithin, lastpulled, "
                              "pulledwithin or tags (a policy that deletes every tag is refused)")
        if (k.lastpulled or k.pulledwithin) and not fr.history.pulls:
            raise ConfigError(f"{where}.keep: lastpulled and pulledwithin need the pull history "
                              "(fastreg.history.pulls: true)")
        if any(not t for t in k.tags):
            raise ConfigError(f"{where}.keep.tags: an empty tag pattern")
        _check_globs(f"{where}.repository", [p.repository], tags=False)
        _check_globs(f"{where}.keep.tags", k.tags, tags=True)
    for i, r in enumerate(fr.immutability.rules):
        where = f"fastreg.immutability.rules.{i}"
        if not r.repository:
            raise ConfigError(f"{where}.repository: a rule needs a repository glob (\"**\" for every repository)")
        if not r.tags or any(not t for t in r.tags):
            raise ConfigError(f"{where}.tags: a rule needs at least one tag pattern, none empty")
        _check_globs(f"{where}.repository", [r.repository], tags=False)
        _check_globs(f"{where}.tags", r.tags, tags=True)
    if fr.quota.limit < 0:
        raise ConfigError("fastreg.quota.limit: must not be negative (0: no limit)")
    seen: set[str] = set()
    for i, q in enumerate(fr.quota.rules):
        where = f"fastreg.quota.rules.{i}"
        if not q.repository:
            raise ConfigError(f"{where}.repository: a quota needs a repository glob (\"team-a/**\")")
        _check_globs(f"{where}.repository", [q.repository], tags=False)
        if q.limit <= 0:
            raise ConfigError(f"{where}.limit: a quota needs a positive limit (bytes, or 500MB, 10GiB)")
        if q.repository in seen:
            raise ConfigError(f"{where}.repository: {q.repository!r} has a quota already")
        seen.add(q.repository)


MIDDLEWARE_KINDS = ("registry", "repository", "storage")


def _check_middleware(cfg: Config) -> None:
    """``middleware``: storage middleware by name (redirect, cloudfront, rewrite; driver/wrappers/middleware.py).
    Distribution has no built-in registry or repository middleware and fails to start on an
    unknown name; so does fastreg.  Entries with ``disabled: true`` are skipped."""
    from .storage.driver.wrappers.middleware import parse
    for kind, entries in cfg.middleware.items():
        if kind not in MIDDLEWARE_KINDS:
            raise ConfigError(f"unknown configuration key 'middleware.{kind}'; valid keys here: "
                              + ", ".join(MIDDLEWARE_KINDS))
        for i, mw in enumerate(entries):
            where = f"middleware.{kind}.{i}"
            if mw.disabled:
                continue
            if not mw.name:
                raise ConfigError(f"{where}.name: a middleware needs a name")
            if kind != "storage":
                raise ConfigError(f"{where}: unable to configure {kind} middleware ({mw.name}): none is "
                                  f"registered with that name (Distribution has no built-in {kind} middleware)")
            try:
                parse(mw.name, mw.options)
            except ValueError as exc:
                raise ConfigError(f"{where}: unable to configure storage middleware ({mw.name}): {exc}") from None


def _warn_unused(present: set[str], cfg: Config) -> None:
    for key in sorted(present):
        reason = UNUSED_KEYS.get(key)
        if key == "auth" and cfg.auth.type == "none":
            continue             # "no auth" is exactly what fastreg does
        if key in ("storage.cache", "redis") and cfg.storage.cache.blobdescriptor == "redis":
            continue             # the shared Redis cache is implemented (storage.driver.wrappers.rediscache)
        if key == "storage.cache" and cfg.storage.cache.blobdescriptor != "inmemory":
            if cfg.storage.cache.blobdescriptor:    # Distribution: "unknown cache type", caching disabled
                log.warning("configuration key 'storage.cache': unknown cache type %r, caching disabled "
                            "(redis or inmemory)", cfg.storage.cache.blobdescriptor)
            continue
        if key == "compatibility.schema1.enabled" and cfg.compatibility.schema1.enabled:
            log.warning("configuration key %r: %s", key, SCHEMA1_NOTE)
            continue
        if reason is not None:
            log.warning("configuration key %r: %s", key, reason)


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read a Distribution-style config.yml (or none), apply env overrides, check, fill defaults."""
    env = os.environ if env is None else env
    raw = _read_yaml(path) if path is not None else {}
    _normalise_named_sections(raw)
    _apply_env(raw, env)
    walk = _Walk()
    norm = walk.struct(raw, Config, ())
    try:
        cfg = msgspec.convert(norm, Config, strict=False)
    except msgspec.ValidationError as exc:
        where = re.search(r" - at `\$\.?([^`]*)`$", str(exc))
        message = str(exc)[:where.start()] if where else str(exc)
        raise ConfigError(f"{where.group(1) if where and where.group(1) else '<top level>'}: {message}") from None
    cfg = _check(cfg, raw, env)
    _warn_unused(walk.present, cfg)
    return cfg


def dump_config(cfg: Config) -> bytes:
    """The resolved config as JSON, for worker processes (see ``config_from_json``)."""
    return msgspec.json.encode(cfg)


def config_from_json(data: bytes | str) -> Config:
    try:
        return msgspec.json.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"resolved configuration: {exc}") from None


# -- addresses ----------------------------------------------------------------------------------

def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{addr!r} is not host:port (e.g. :5000, 127.0.0.1:5000, [::1]:5000)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{addr!r}: put IPv6 addresses in brackets, e.g. [::1]:5000")
    return host or "0.0.0.0", int(port)


def listen_address(cfg: Config) -> tuple[str, int]:
    """http.addr as (host, port): ":5000" → ("0.0.0.0", 5000), "[::1]:5000" → ("::1", 5000)."""
    try:
        return _split_addr(cfg.http.addr)
    except ValueError as exc:
        raise ConfigError(f"http.addr: {exc}") from None


def debug_address(cfg: Config) -> tuple[str, int] | None:
    """http.debug.addr as (host, port), or None when the debug listener is off."""
    if not cfg.http.debug.addr:
        return None
    try:
        return _split_addr(cfg.http.debug.addr)
    except ValueError as exc:
        raise ConfigError(f"http.debug.addr: {exc}") from None
