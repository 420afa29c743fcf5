"""The course website in a real browser: every page of _site/ opened in headless Chromium.   [make site-test]

For every page: it loads without console errors; its maths is typeset by the bundled MathJax (every maths
element rendered, no TeX error, no raw $...$ left in the text); its images load; every link inside the site
resolves (the file answers 200, the #anchor exists there); and no request leaves localhost, with the browser
told that no other host exists, as on a machine with no network. Plus checks without a browser: no page or
stylesheet names an outside script, style, font or image, and each notebook page has its Colab badge and a
download link to the notebook exactly as committed.

Needs `make site` first (and Debian's chromium + chromium-driver). Screenshots of two pages go to
$SITE_SCREENSHOTS (default /tmp/course-site-screenshots).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_site"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("SITE_SCREENSHOTS", "/tmp/course-site-screenshots"))
# Two pages to look at: the home page, and a notebook with equations and figures (scrolled to its first figure).
SCREENSHOT_PAGES = {"index.html": "top", "notebooks/02_reverse_process.html": "figure"}


def site_pages() -> list[str]:
    """Return every HTML page of the site (theme fragments under _static/ are not pages)."""
    if not (SITE / "index.html").exists():
        return []
    return sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html") if not p.relative_to(SITE).parts[0].startswith("_"))


PAGES = site_pages()
pytestmark = pytest.mark.skipif(not PAGES, reason="no site in _site/: run `make site` first")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports failures itself
        pass


@pytest.fixture(scope="module")
def server():
    """Serve _site/ on 127.0.0.1 (a free port) from a thread; yield its base address."""
    handler = functools.partial(_Quiet, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    """Start headless Chromium with a fresh profile, its console and network logs on, and no host but localhost."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="course-site-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1366,860",
                 # Viewing offline: every host but localhost fails to resolve, so a page that needs one breaks here.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    driver.get("about:blank")
    driver.get_log("browser"), driver.get_log("performance")  # what the browser did before the first page
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class _Anchors(html.parser.HTMLParser):
    """Collect the ids and names a page offers as #anchors."""

    def __init__(self):
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key == "id" or (key == "name" and tag == "a"):
                self.anchors.add(value)


@functools.lru_cache(maxsize=None)
def fetch(url: str) -> tuple[int, frozenset[str]]:
    """Return the HTTP status of a site URL and, for an HTML page, the anchors it defines."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read()
            status = response.status
            kind = response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        return error.code, frozenset()
    anchors = set()
    if kind == "text/html":
        parser = _Anchors()
        parser.feed(body.decode("utf-8", "replace"))
        anchors = parser.anchors
    return status, frozenset(anchors)


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) { done("none"); return; }
MathJax.startup.promise.then(() => done("typeset"), (e) => done("error: " + e));
"""

PAGE_FACTS = """
const maths = Array.from(document.querySelectorAll("span.math, div.math"));
const prose = document.querySelector("main") || document.body;
const copy = prose.cloneNode(true);
copy.querySelectorAll("pre, code, script, style, mjx-container, .math, textarea").forEach((e) => e.remove());
return {
  maths: maths.length,
  unrendered: maths.filter((e) => !e.querySelector("mjx-container")).map((e) => e.textContent.slice(0, 80)),
  tex_errors: Array.from(document.querySelectorAll("mjx-merror")).map((e) => e.getAttribute("data-mjx-error") || e.textContent),
  text: copy.textContent,
  links: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href),
  resources: performance.getEntriesByType("resource").map((r) => r.name),
};
"""

IMAGES = """
const images = Array.from(document.images);
images.forEach((img) => { if (img.loading === "lazy") img.loading = "eager"; });
return images.map((img) => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
                               done: img.complete}));
"""

RAW_TEX = re.compile(r"\$[^$\s][^$]*?\$|\\\(|\\\[|\\begin\{")
# Not network requests: inline data, the page's own objects, and the browser's built-in pages.
ALLOWED_SCHEMES = ("data", "blob", "about", "javascript", "mailto", "chrome", "chrome-extension", "devtools")


def is_local(url: str, base: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    return parsed.scheme in ALLOWED_SCHEMES or url.startswith(base)


@pytest.mark.parametrize("page", PAGES)
def test_page_in_a_browser(page, server, browser):
    problems: list[str] = []
    browser.get_log("browser"), browser.get_log("performance")  # start this page with empty logs
    browser.get(server + page)
    state = browser.execute_async_script(WAIT_FOR_MATHJAX)
    if state.startswith("error"):
        problems.append(f"MathJax failed: {state}")

    deadline = time.monotonic() + 20
    images = browser.execute_script(IMAGES)
    while not all(i["done"] for i in images) and time.monotonic() < deadline:
        time.sleep(0.2)
        images = browser.execute_script(IMAGES)
    facts = browser.execute_script(PAGE_FACTS)

    # 1. no console errors (failed loads are logged here too)
    for entry in browser.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console error: {entry['message'][:200]}")
    # 2. maths typeset, nothing left raw
    if facts["maths"] and state != "typeset":
        problems.append(f"{facts['maths']} maths elements but MathJax is {state}")
    problems += [f"maths not rendered: {t!r}" for t in facts["unrendered"][:5]]
    problems += [f"TeX error: {t!r}" for t in facts["tex_errors"][:5]]
    problems += [f"raw TeX in the text: {m.group(0)[:60]!r}" for m in list(RAW_TEX.finditer(facts["text"]))[:5]]
    # 3. every image loaded
    problems += [f"image did not load: {i['src'][:120]}" for i in images if not i["ok"]]
    # 4. every link inside the site resolves, anchors included
    for link in sorted(set(facts["links"])):
        parsed = urllib.parse.urlsplit(link)
        if not link.startswith(server):
            continue
        status, anchors = fetch(urllib.parse.urlunsplit(parsed._replace(fragment="")))
        fragment = urllib.parse.unquote(parsed.fragment)
        if status != 200:
            problems.append(f"link {link[len(server):]} answers {status}")
        elif fragment and fragment not in anchors:
            problems.append(f"link {link[len(server):]}: no #{fragment} there")
    # 5. no request left localhost (the network log sees requests even when they fail)
    requested = set(facts["resources"])
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    problems += [f"request outside localhost: {u[:120]}" for u in sorted(requested) if not is_local(u, server)]

    if page in SCREENSHOT_PAGES:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        if SCREENSHOT_PAGES[page] == "figure":
            browser.execute_script("const f = document.querySelector('div.cell_output img');"
                                   "if (f) f.scrollIntoView({block: 'center'});")
        browser.save_screenshot(str(SCREENSHOTS / (page.replace("/", "_").replace(".html", ".png"))))
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


# ---- checks of the built files, without a browser ----

OUTSIDE = re.compile(r"""<(script|link|img|iframe|source|video|audio|embed)\b[^>]*?\b(src|href|srcset)\s*=\s*["']?\s*(https?:)?//""",
                     re.I)


def test_no_page_names_an_outside_resource():
    """No script, stylesheet, icon, font or image from another host in any HTML or CSS file of the site."""
    found = []
    for path in SITE.rglob("*.html"):
        found += [f"{path.relative_to(SITE)}: {m.group(0)[:100]}" for m in OUTSIDE.finditer(path.read_text("utf-8", "replace"))]
    for path in SITE.rglob("*.css"):
        found += [f"{path.relative_to(SITE)}: {m.group(0)}" for m in
                  re.finditer(r"(url\(\s*['\"]?(https?:)?//[^)]*\)|@import\s+['\"]?(https?:)?//[^;]*)", path.read_text("utf-8", "replace"))]
    assert not found, "\n".join(found[:20])


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, list[str]]] = []  # (href, the img srcs inside the link)
        self._open: list[list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.links.append((attrs["href"], []))
        elif tag == "img" and self.links:
            self.links[-1][1].append(attrs.get("src", ""))


def test_site_has_every_notebook_with_badge_and_download():
    """The home page links every notebook; each notebook page has its Colab badge and the .ipynb as committed."""
    assert NOTEBOOKS, "no notebooks found"
    home = (SITE / "index.html").read_text()
    assert (SITE / "notebooks" / "NOTATION.html").exists(), "no notation page"
    for notebook in NOTEBOOKS:
        page = SITE / "notebooks" / f"{notebook.stem}.html"
        assert page.exists(), f"no page for {notebook.name}"
        assert f'href="notebooks/{notebook.stem}.html"' in home, f"the home page does not link {notebook.name}"
        parser = _Links()
        parser.feed(page.read_text())
        colab = [href for href, imgs in parser.links
                 if href.startswith("https://colab.research.google.com/github/") and href.endswith(f"/notebooks/{notebook.name}")
                 and any(src.endswith("colab-badge.svg") and "//" not in src for src in imgs)]
        assert colab, f"{page.name}: no Colab badge (a local badge image linking to Colab)"
        downloads = [href for href, _ in parser.links if href.endswith(f"/{notebook.name}") and "://" not in href]
        assert downloads, f"{page.name}: no download link for {notebook.name}"
        target = (page.parent / downloads[0]).resolve()
        assert target.read_bytes() == notebook.read_bytes(), f"{page.name}: the download differs from notebooks/{notebook.name} (rebuild: make site)"
