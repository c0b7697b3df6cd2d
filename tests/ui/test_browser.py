"""The web page end to end: headless Chromium against a fastreg started here, content pushed
over the real API, every shown value compared with what was pushed."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.auth.htpasswd import add_user
from tests.support.registry_client import Manifest, make_manifest, push_manifest
from tests.support.server import FastregServer, make_fastreg

from .conftest import COSIGN_SIG, SPDX, Pushed, push_docker_list, push_multiarch, push_small

pytestmark = [pytest.mark.e2e]

WAIT = 15.0
POLICY = {
    "groups": {"admins": ["alice"]},
    "catalog": ["authenticated"],
    "rules": [
        {"repository": "public/**", "pull": ["anonymous"], "push": ["@admins"]},
        {"repository": "team/*", "pull": ["authenticated"], "push": ["@admins"]},
        {"repository": "private/**", "pull": ["@admins"], "push": ["@admins"]},
    ],
}
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
POLICY_REPOS = ["private/secret", "public/base", "team/app"]


# -- helpers -----------------------------------------------------------------------------------
def wait(drv: Any, cond: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        # the page re-renders while it loads: an element found a moment ago may be gone when its
        # text is read — that is "not yet", so poll again
        return WebDriverWait(drv, WAIT, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: cond(d))
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; page shows:\n{drv.find_element('id', 'view').text}"
                             f"\nconsole: {drv.get_log('browser')}") from None


def css(drv: Any, selector: str) -> list[Any]:
    return drv.find_elements("css selector", selector)


def texts(drv: Any, selector: str) -> list[str]:
    return [e.text for e in css(drv, selector)]


def settled(drv: Any) -> bool:
    return drv.find_element("id", "view").get_attribute("aria-busy") == "false"


def open_ui(drv: Any, srv: FastregServer, fragment: str = "#/") -> None:
    drv.get(f"{srv.url}/ui/{fragment}")
    wait(drv, settled, f"{fragment} to load")


def go(drv: Any, fragment: str) -> None:
    """Navigate inside the page (a hash change, as a click on a link does)."""
    drv.execute_script("location.hash = arguments[0]", fragment)
    wait(drv, lambda d: settled(d) and d.execute_script("return location.hash") == fragment, fragment)


def click_link(drv: Any, selector: str, text: str) -> None:
    links = [e for e in css(drv, selector) if e.text == text]
    assert links, (selector, text, texts(drv, selector))
    before = drv.execute_script("return location.hash")
    links[0].click()
    wait(drv, lambda d: d.execute_script("return location.hash") != before and settled(d), f"link {text}")


def digests(drv: Any, selector: str) -> list[str]:
    """The full digests behind the shortened ones shown (each checked to be shown short)."""
    out = []
    for e in css(drv, selector):
        full = e.get_attribute("data-digest")
        algo, _, hexdigits = full.partition(":")
        assert e.text == f"{algo}:{hexdigits[:12]}…" and e.get_attribute("title") == full, (e.text, full)
        out.append(full)
    return out


def click_digest(drv: Any, selector: str, digest: str) -> None:
    links = [e for e in css(drv, selector) if e.get_attribute("data-digest") == digest]
    assert links, (selector, digest, [e.get_attribute("data-digest") for e in css(drv, selector)])
    before = drv.execute_script("return location.hash")
    links[0].click()
    wait(drv, lambda d: d.execute_script("return location.hash") != before and settled(d), f"link {digest}")


def byte_sizes(drv: Any, selector: str) -> list[int]:
    return [int(e.get_attribute("data-bytes")) for e in css(drv, selector)]


def no_console_errors(drv: Any) -> None:
    """No script error and no CSP violation: the page runs under its own strict policy."""
    bad = [e for e in drv.get_log("browser") if e["level"] == "SEVERE" and "status of 40" not in e["message"]]
    assert not bad, bad


def login(drv: Any, user: str) -> None:
    """Sign in through the page's form (asked for by the page, or opened with "Sign in")."""
    wait(drv, lambda d: settled(d) and (css(d, "#login") or css(d, "#signin")), "the login form or Sign in")
    if not css(drv, "#login"):
        css(drv, "#signin")[0].click()
    wait(drv, lambda d: css(d, "#login"), "the login form")
    css(drv, "#login-user")[0].send_keys(user)
    css(drv, "#login-password")[0].send_keys(PASSWORDS[user])
    css(drv, "#login button[type=submit]")[0].click()
    wait(drv, lambda d: settled(d) and css(d, "#user") and not css(d, "#login"), f"{user} signed in")


def sign_out(drv: Any) -> None:
    css(drv, "#signout")[0].click()
    wait(drv, lambda d: settled(d) and not css(d, "#user"), "signed out")


# -- an open registry with a multi-arch image, referrers, many repositories and tags -----------
TAG_COUNT_CAP = 1000           # app.js: tags counted per repository in the list
MORE_THAN_CAP = TAG_COUNT_CAP + 1


@dataclass
class Extra:
    """The tag-count repositories (0, 3 and more than the page counts) and when pushing ran."""

    three: list[Manifest]
    started: float
    finished: float


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastregServer, Pushed, Any, Extra]]:
    srv = make_fastreg(tmp_path_factory.mktemp("ui"))
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            started = time.time()
            pushed = push_multiarch(c, "demo/app", "1.0")
            docker = push_docker_list(c, "demo/docker", "2.0")
            push_small(c, "demo/many", [f"t{i:03d}" for i in range(55)])
            for i in range(52):
                push_small(c, f"bulk/n{i:02d}", ["v1"])
            push_manifest(c, "demo/untagged", make_manifest())          # by digest only: no tag
            three = [push_small(c, "demo/three", [t]) for t in ("a", "b", "c")]
            push_small(c, "demo/lots", [f"x{i:04d}" for i in range(MORE_THAN_CAP)])
            finished = time.time()
        yield srv, pushed, docker, Extra(three, started, finished)
    finally:
        srv.stop()


def test_repository_to_layers(browser: Any, open_registry: Any, tmp_path: Path) -> None:
    srv, p, *_ = open_registry
    open_ui(browser, srv)
    assert "demo/app" not in texts(browser, "a.repo")             # bulk/* fills the first page
    css(browser, "#repos-more")[0].click()
    wait(browser, lambda d: "demo/app" in texts(d, "a.repo"), "demo/app on the second page")
    click_link(browser, "a.repo", "demo/app")
    assert texts(browser, "#repo-name") == ["demo/app"]
    assert texts(browser, "a.tag") == ["1.0"]
    assert texts(browser, "#pull-repo") == [f"podman pull {srv.host}/demo/app:1.0"]
    click_link(browser, "a.tag", "1.0")

    # the index: platforms, digests, sizes, annotations (shown as text), pull commands
    wait(browser, lambda d: css(d, "#sizes-total"), "the index sizes")
    assert digests(browser, "#manifest-digest .digest") == [p.index.digest]
    assert texts(browser, "#manifest-media-type") == ["application/vnd.oci.image.index.v1+json"]
    assert texts(browser, "td.platform-name") == [name for name, *_ in p.platforms]
    assert digests(browser, "#platforms a.digest") == [m.digest for _, m, _, _ in p.platforms]
    assert byte_sizes(browser, "#platforms .size") == [m.size for _, m, _, _ in p.platforms]
    assert texts(browser, "#pull-tag") == [f"podman pull {srv.host}/demo/app:1.0"]
    assert texts(browser, "#pull-digest") == [f"podman pull {srv.host}/demo/app@{p.index.digest}"]
    assert "<script>alert(1)</script>" in texts(browser, "#annotations dd")
    assert len(css(browser, "script")) == 1          # the annotation stayed text
    blobs = [b for _, _, cfg, layers in p.platforms for b in (cfg, *layers)]
    assert byte_sizes(browser, "#sizes-total .size") == [sum(b.size for b in blobs)]
    assert byte_sizes(browser, "#sizes-unique .size") == [sum({b.digest: b.size for b in blobs}.values())]
    assert byte_sizes(browser, "#sizes-unique .size")[0] < byte_sizes(browser, "#sizes-total .size")[0]
    browser.save_screenshot(str(tmp_path / "index.png"))

    # one platform's manifest: config, layers, image config (platform, created, history)
    name, m, cfg, layers = p.platforms[1]
    click_digest(browser, "#platforms a.digest", m.digest)
    wait(browser, lambda d: css(d, "#image-platform"), "the image config")
    assert digests(browser, "#manifest-digest .digest") == [m.digest]
    assert digests(browser, "#config-digest .digest") == [cfg.digest]
    assert digests(browser, "#layers .digest") == [b.digest for b in layers]
    assert texts(browser, "#layers .media-type") == [b.media_type for b in layers]
    assert byte_sizes(browser, "#layers .size") == [b.size for b in layers]
    assert byte_sizes(browser, "#sizes-total .size") == [cfg.size + sum(b.size for b in layers)]
    assert texts(browser, "#image-platform") == [name] == ["linux/arm64/v8"]
    config = json.loads(cfg.data)
    assert texts(browser, "#image-created") == [config["created"]]
    assert [r.text for r in css(browser, "tr.history pre")] == [h["created_by"] for h in config["history"]]
    assert "<b>not html</b>" in texts(browser, "#labels dd")
    assert texts(browser, "#annotations dd") == [f"demo {name.split('/')[1]}"]
    assert texts(browser, "#pull-digest") == [f"podman pull {srv.host}/demo/app@{m.digest}"]
    shot = tmp_path / "manifest.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    no_console_errors(browser)


def test_referrers(browser: Any, open_registry: Any) -> None:
    srv, p, *_ = open_registry
    open_ui(browser, srv, "#/r/demo%2Fapp/m/1.0")
    wait(browser, lambda d: css(d, "tr.referrer"), "the referrers")
    assert texts(browser, "h3.referrer-kind") == ["Signatures (1)", "SBOMs (1)"]
    assert texts(browser, "#referrers-signatures .artifact-type") == [COSIGN_SIG]
    assert digests(browser, "#referrers-signatures a.digest") == [p.signature.digest]
    assert texts(browser, "#referrers-sboms .artifact-type") == [SPDX]
    assert digests(browser, "#referrers-sboms a.digest") == [p.sbom.digest]
    assert byte_sizes(browser, "#referrers-sboms .size") == [p.sbom.size]

    # the filter asks the API for one artifactType
    from selenium.webdriver.support.ui import Select
    Select(css(browser, "#referrers-filter")[0]).select_by_value(SPDX)
    wait(browser, lambda d: texts(d, "h3.referrer-kind") == ["SBOMs (1)"], "the SBOMs only")

    click_digest(browser, "#referrers-sboms a.digest", p.sbom.digest)
    wait(browser, lambda d: css(d, "#manifest-artifact-type"), "the SBOM manifest")
    assert texts(browser, "#manifest-artifact-type") == [SPDX]
    assert digests(browser, "#manifest-subject .digest") == [p.index.digest]
    assert texts(browser, "#layers .media-type") == [SPDX]
    assert css(browser, "#no-referrers")
    no_console_errors(browser)


def test_paging_and_search(browser: Any, open_registry: Any) -> None:
    srv, *_ = open_registry
    everything = sorted(["demo/app", "demo/docker", "demo/many", "demo/untagged", "demo/three", "demo/lots",
                         *(f"bulk/n{i:02d}" for i in range(52))])
    open_ui(browser, srv)
    assert texts(browser, "a.repo") == everything[:50]              # one page, not everything
    css(browser, "#repos-more")[0].click()
    wait(browser, lambda d: len(css(d, "a.repo")) == len(everything), "the second page")
    assert texts(browser, "a.repo") == everything
    assert not css(browser, "#repos-more")[0].is_displayed()

    go(browser, "#/?q=app&m=contains")
    assert texts(browser, "a.repo") == ["demo/app"]
    go(browser, "#/?q=bulk%2Fn4&m=prefix")
    assert texts(browser, "a.repo") == [f"bulk/n{i}" for i in range(40, 50)]
    go(browser, "#/?q=n0&m=prefix")
    assert texts(browser, "a.repo") == []
    assert texts(browser, "#repos-status") == ["No repository matches."]

    # the search box drives the same
    go(browser, "#/")
    box = css(browser, "#search")[0]
    box.send_keys("many\n")
    wait(browser, lambda d: settled(d) and texts(d, "a.repo") == ["demo/many"], "a typed search")

    go(browser, "#/r/demo%2Fmany")
    tags = [f"t{i:03d}" for i in range(55)]
    assert texts(browser, "a.tag") == tags[:50]
    css(browser, "#tags-more")[0].click()
    wait(browser, lambda d: texts(d, "a.tag") == tags, "the second page of tags")
    pushed = css(browser, "td.pushed")                        # each tag with its last push (history endpoint)
    assert len(pushed) == len(tags)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", p.text) for p in pushed), \
        [p.text for p in pushed[:3]]
    no_console_errors(browser)


def test_tag_counts(browser: Any, open_registry: Any) -> None:
    """Each repository shown with its number of tags: one bounded request each, "1000+" past the cap."""
    srv, *_ = open_registry
    open_ui(browser, srv)
    counts = {e.find_element("xpath", "..").find_element("css selector", "a.repo").text: e
              for e in css(browser, ".tag-count")}
    assert len(counts) == 50 and {e.text for e in counts.values()} == {"1 tag"}
    css(browser, "#repos-more")[0].click()
    wait(browser, lambda d: settled(d) and len(css(d, ".tag-count[data-count]")) == len(css(d, "a.repo")) > 50,
         "the second page's counts")
    shown = {e.find_element("xpath", "..").find_element("css selector", "a.repo").text: e.text
             for e in css(browser, ".tag-count")}
    assert {k: v for k, v in shown.items() if k.startswith("demo/")} == {
        "demo/app": "1 tag", "demo/docker": "1 tag", "demo/lots": f"{TAG_COUNT_CAP}+ tags",
        "demo/many": "55 tags", "demo/three": "3 tags", "demo/untagged": "0 tags"}
    with httpx.Client(base_url=srv.url) as c:           # the cap is the page's, not the registry's
        assert len(c.get("/v2/demo/lots/tags/list").json()["tags"]) == MORE_THAN_CAP
        assert c.get("/v2/demo/untagged/tags/list").status_code == 404          # NAME_UNKNOWN
    # a repository without tags: its page says so; a name nothing was pushed to is an error
    go(browser, "#/r/demo%2Funtagged")
    assert texts(browser, "#tags-status") == ["No tags."] and not css(browser, "#error")
    assert texts(browser, "#repo-name") == ["demo/untagged"]
    go(browser, "#/r/demo%2Fnothing")
    assert css(browser, "#error") and not css(browser, "#tags-status")
    no_console_errors(browser)


def test_tags_digest_size_pushed(browser: Any, open_registry: Any) -> None:
    """A repository's tags: the digest (short, copyable whole), the image's size, the push time."""
    srv, p, _, extra = open_registry
    open_ui(browser, srv, "#/r/demo%2Fthree")
    wait(browser, lambda d: len(css(d, "td.tag-size .size")) == 3, "the tags' sizes")
    assert texts(browser, "a.tag") == ["a", "b", "c"]
    assert digests(browser, "td.tag-digest .digest") == [m.digest for m in extra.three]
    assert len({m.digest for m in extra.three}) == 3
    assert byte_sizes(browser, "td.tag-size .size") == [sum(b.size for b in m.blobs) for m in extra.three]
    with httpx.Client(base_url=srv.url) as c:
        history = {t["tag"]: t for t in c.get("/v2/_fastreg/history/demo/three").json()["tags"]}
    for row, tag in zip(css(browser, "tr.tag-row"), "abc", strict=False):
        cell = row.find_element("css selector", "td.pushed")
        assert cell.get_attribute("title") == history[tag]["pushed"]
        when = datetime.strptime(cell.text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC).timestamp()
        assert extra.started - 2 <= when <= extra.finished + 1, (cell.text, extra.started, extra.finished)

    # Copy: the whole digest to the clipboard (granted to this origin, as a user's click does) ...
    browser.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": srv.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    button = css(browser, "td.tag-digest button.copy")[1]
    button.click()
    wait(browser, lambda d: button.text == "Copied", "Copied")
    clip = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('' + e))")
    assert clip == extra.three[1].digest
    # ... and without a clipboard API, the whole digest shown and selected for Ctrl+C
    browser.execute_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    button = css(browser, "td.tag-digest button.copy")[2]
    button.click()
    wait(browser, lambda d: button.text == "Selected: press Ctrl+C", "the fallback")
    assert css(browser, "td.tag-digest .digest")[2].text == extra.three[2].digest
    assert browser.execute_script("return getSelection().toString()") == extra.three[2].digest

    # an index: its platforms counted; many tags of one manifest read it once
    go(browser, "#/r/demo%2Fapp")
    wait(browser, lambda d: css(d, "td.tag-size .platforms"), "the index's platforms")
    assert texts(browser, "td.tag-size") == [f"{len(p.platforms)} platforms"]
    assert digests(browser, "td.tag-digest .digest") == [p.index.digest]
    go(browser, "#/r/demo%2Fmany")
    wait(browser, lambda d: len(css(d, "td.tag-size .size")) == 50, "the sizes of the first page")
    assert len(set(byte_sizes(browser, "td.tag-size .size"))) == 1
    no_console_errors(browser)


def test_layer_links_to_blob(browser: Any, open_registry: Any) -> None:
    srv, p, *_ = open_registry
    _, m, cfg, layers = p.platforms[0]
    open_ui(browser, srv, f"#/r/demo%2Fapp/m/{m.digest}")
    wait(browser, lambda d: css(d, "#layers a.blob"), "the layers")
    links = css(browser, "#layers a.blob")
    assert [a.get_attribute("href") for a in links] == [f"{srv.url}/v2/demo/app/blobs/{b.digest}" for b in layers]
    assert [a.get_attribute("download") for a in links] == [b.digest.replace(":", "-") for b in layers]
    assert css(browser, "#config-digest a.blob")[0].get_attribute("href") == f"{srv.url}/v2/demo/app/blobs/{cfg.digest}"
    with httpx.Client() as c:                              # the link is the blob
        for a, b in zip(links, layers, strict=False):
            assert c.get(a.get_attribute("href")).content == b.data
    no_console_errors(browser)


def test_small_catalog_maximum(browser: Any, fastreg_factory: Any) -> None:
    """fastreg.catalog.maxentries below the page's page size: the page asks again with the
    maximum the 400 names, and still shows every repository and finds by search."""
    srv = fastreg_factory({"fastreg": {"catalog": {"maxentries": 20}}})
    names = [f"small/r{i:02d}" for i in range(45)]
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        for name in names:
            push_small(c, name, ["v1"])
    open_ui(browser, srv)
    while css(browser, "#repos-more")[0].is_displayed():
        css(browser, "#repos-more")[0].click()
        wait(browser, settled, "the next page")
    assert texts(browser, "a.repo") == names
    go(browser, "#/?q=r4&m=contains")
    assert texts(browser, "a.repo") == [f"small/r{i}" for i in range(40, 45)]
    no_console_errors(browser)


def test_docker_media_types(browser: Any, open_registry: Any) -> None:
    """A Docker manifest list and schema2 manifests, asked for with the same Accept header."""
    srv, _, (lst, children), _ = open_registry
    open_ui(browser, srv, "#/r/demo%2Fdocker/m/2.0")
    wait(browser, lambda d: css(d, "#sizes-total"), "the list's sizes")
    assert digests(browser, "#manifest-digest .digest") == [lst.digest]
    assert texts(browser, "#manifest-media-type") == ["application/vnd.docker.distribution.manifest.list.v2+json"]
    assert texts(browser, "td.platform-name") == [name for name, _ in children]
    name, m = children[0]
    click_digest(browser, "#platforms a.digest", m.digest)
    wait(browser, lambda d: css(d, "#image-platform"), "the image config")
    assert texts(browser, "#manifest-media-type") == ["application/vnd.docker.distribution.manifest.v2+json"]
    assert texts(browser, "#config-media-type") == ["application/vnd.docker.container.image.v1+json"]
    assert digests(browser, "#layers .digest") == [b.digest for b in m.blobs[1:]]
    assert texts(browser, "#layers .media-type") == ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
    assert texts(browser, "#image-platform") == [name] == ["linux/amd64"]
    no_console_errors(browser)


# -- who sees what: htpasswd and token auth with an access policy ------------------------------
@pytest.fixture
def users(tmp_path: Path) -> Path:
    f = tmp_path / "htpasswd"
    for user, pw in PASSWORDS.items():
        add_user(f, user, pw, cost=5)
    return f


def check_policy(browser: Any, srv: FastregServer, anonymous_catalog: bool) -> None:
    open_ui(browser, srv)
    if anonymous_catalog:        # anonymous users browse what anonymous may pull, and may sign in
        assert texts(browser, "a.repo") == ["public/base"]
    login(browser, "bob")
    assert texts(browser, "a.repo") == ["public/base", "team/app"]          # no private/secret
    click_link(browser, "a.repo", "team/app")
    assert texts(browser, "a.tag") == ["v1"]
    go(browser, "#/r/private%2Fsecret")                                      # straight there
    assert css(browser, "#error") and not css(browser, "a.tag")
    assert "may not pull" in texts(browser, "#error")[0]
    go(browser, "#/r/private%2Fsecret/m/v1")
    assert css(browser, "#error") and not css(browser, "#manifest-digest")
    go(browser, "#/?q=secret&m=contains")
    assert texts(browser, "a.repo") == []
    go(browser, "#/")
    sign_out(browser)
    login(browser, "alice")
    assert texts(browser, "a.repo") == POLICY_REPOS
    click_link(browser, "a.repo", "private/secret")
    assert texts(browser, "a.tag") == ["v1"]
    sign_out(browser)
    # a wrong password is refused and says so
    if not css(browser, "#login"):
        css(browser, "#signin")[0].click()
    css(browser, "#login-user")[0].send_keys("bob")
    css(browser, "#login-password")[0].send_keys("nope")
    css(browser, "#login button[type=submit]")[0].click()
    wait(browser, lambda d: texts(d, "#login-error") == ["invalid username or password"], "the refusal")
    no_console_errors(browser)


def test_policy_htpasswd(browser: Any, fastreg_factory: Any, users: Path) -> None:
    policy = {**POLICY, "catalog": ["anonymous"]}
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "r", "path": str(users)}},
                           "fastreg": {"auth": {"access": policy}}})
    with httpx.Client(base_url=srv.url, auth=("alice", PASSWORDS["alice"]), timeout=30.0) as c:
        for repo in POLICY_REPOS:
            push_small(c, repo, ["v1"])
    check_policy(browser, srv, anonymous_catalog=True)


def test_policy_token_service(browser: Any, fastreg_factory: Any, users: Path, test_pki: Any) -> None:
    from tests.auth.test_tokenservice_e2e import SERVICE, token_config
    cfg = token_config(test_pki, users, tls=False)
    cfg["fastreg"]["auth"]["access"] = POLICY
    srv = fastreg_factory(cfg)
    scopes = [("scope", f"repository:{r}:pull,push") for r in POLICY_REPOS]
    tok = httpx.get(srv.url + "/token", params=[("service", SERVICE), *scopes],
                    auth=("alice", PASSWORDS["alice"])).json()["token"]
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tok}"}, timeout=30.0) as c:
        for repo in POLICY_REPOS:
            push_small(c, repo, ["v1"])
    check_policy(browser, srv, anonymous_catalog=False)


def test_repository_usage_and_quota(browser: Any, fastreg_factory: Any) -> None:
    """With a storage quota configured, a repository's page shows its usage and the quotas that
    apply (from /v2/_fastreg/usage/<name>); without one, nothing (the other tests' pages)."""
    quota = {"limit": "1GiB", "rules": [{"repository": "q/**", "limit": "10MiB"}]}
    srv = fastreg_factory({"fastreg": {"quota": quota}})
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        m = push_small(c, "q/app", ["v1"])
    used = m.size + sum(b.size for b in m.blobs)
    open_ui(browser, srv, "#/r/q%2Fapp")
    line = wait(browser, lambda d: css(d, "#repo-usage"), "the usage line")[0].text
    assert line == (f"Storage used: {used / 1024:.2f} KiB; quota of q/**: {used / 1024:.2f} KiB of 10.0 MiB; "
                    f"quota of the registry: {used / 1024:.2f} KiB of 1.00 GiB."), line
    no_console_errors(browser)
