"""The course website in a real browser: every page of _site/ opened in headless Chromium.   [make site-test]

For every page: it loads without a console warning or error; its maths is typeset by the bundled MathJax (every
maths element rendered, no TeX error, no raw $...$ left in the text); its images load; every link inside the
site resolves (the file answers 200, the #anchor exists there); no request leaves localhost, with the browser
told that no other host exists, as on a machine with no network; and, on a laptop (1366 px) and on a phone
(390 px), nothing runs off the page (the page does not scroll sideways, nothing is cut off at the edge, and every
link is on screen: only code, wide tables and figures scroll, inside their own box), and no number in a table
breaks across lines. On both widths the
navigation opens: the visible ☰ and contents buttons show their panels. Plus checks without a browser: no page
or stylesheet names an outside script, style, font or image, and each notebook page has its Colab badge and a
download link to the notebook's student copy (solutions out, every link absolute and pointing at a file of the
repository), with a note on how to get the course, which the home page gives too.

Needs `make site` first (and Debian's chromium + chromium-driver). Screenshots go to $SITE_SCREENSHOTS (default
/tmp/course-site-screenshots): a few pages on the laptop and on the phone, and the phone's open panels.
"""

from __future__ import annotations

import functools
import html
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
# Pages to look at: the home page, a notebook with equations and figures (scrolled to its first figure), and on the
# phone the course map and a notebook's attention maps (figures wider than a phone, which scroll sideways).
SCREENSHOT_PAGES = {"index.html": "top", "notebooks/02_reverse_process.html": "div.cell_output img"}
PHONE_SCREENSHOT_PAGES = {"index.html": "table.course-map", "notebooks/01_forward_process.html": "top",
                          "notebooks/08_prompt_to_prompt_masks.html": "div.cell_output img"}
# A laptop, and a phone (an iPhone 12-15's 390 css px; emulated: the window itself cannot be that narrow). The
# emulated phone keeps a laptop's scroll bar, so a page has 375 px beside it: stricter than a phone, whose scroll
# bar floats over the page.
DESKTOP = (1366, 860)
PHONE = (390, 844)


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
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
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


def set_width(driver, size) -> None:
    """Show pages at a width: the window's own (the laptop), or a phone's, emulated (a window cannot be that narrow)."""
    if getattr(driver, "course_size", DESKTOP) == size:
        return
    if size == DESKTOP:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    else:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False})
    driver.course_size = size
    # Let the page lay itself out again at the new width before anything is measured.
    driver.execute_async_script("const done = arguments[arguments.length - 1];"
                                "requestAnimationFrame(() => requestAnimationFrame(() => done()));")


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

# What runs off the page at the current width. An element reaching past the right edge is fine only inside a box
# that scrolls sideways and itself fits (code, a wide table, a figure, display maths); one cut off by a box that
# hides its overflow is not. Only the outermost element that runs off is named. Screen readers' copy of the maths
# (mjx-assistive-mml) is clipped on purpose, and closed panels are not on the page.
OFF_THE_PAGE = """
const width = document.documentElement.clientWidth;
const name = (e) => `<${e.tagName.toLowerCase()} class="${(e.getAttribute("class") || "").slice(0, 40)}"> `
  + (e.textContent || e.getAttribute("src") || "").replace(/\\s+/g, " ").trim().slice(0, 60);
const shown = (e) => { const s = getComputedStyle(e); return s.visibility !== "hidden" && s.position !== "fixed"; };
// The nearest box around an element that scrolls sideways or hides what overflows it (cached: pages are long).
const boxes = new Map();
const boxOf = (e) => {
  if (!e || e === document.documentElement) return null;
  if (!boxes.has(e)) boxes.set(e, getComputedStyle(e).overflowX !== "visible" ? e : boxOf(e.parentElement));
  return boxes.get(e);
};
const problems = [];
for (const e of document.querySelectorAll("body *")) {
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.right <= width + 1 || !shown(e)) continue;
  if (e.closest("mjx-assistive-mml, dialog:not([open]), .bd-sidebar-primary, .bd-sidebar-secondary")) continue;
  // Up through the boxes around it: one that scrolls sideways and fits is fine; one it reaches past, and that
  // hides its overflow, cuts it off; one it stays inside passes the question to the next box out.
  let scrolls = false, cut = null;
  for (let box = boxOf(e.parentElement); box; box = boxOf(box.parentElement)) {
    const overflow = getComputedStyle(box).overflowX, edge = box.getBoundingClientRect().right;
    if (overflow === "auto" || overflow === "scroll") { scrolls = edge <= width + 1; break; }
    if (r.right > edge + 1) { cut = box; break; }
  }
  if (scrolls) {  // fine, unless it is a link: a reader would not find it
    if (e.tagName === "A" && !e.closest("pre")) problems.push(`a link off the screen (in a box that scrolls sideways): ${name(e)}`);
    continue;
  }
  if (e.parentElement.getBoundingClientRect().right > width + 1 && cut !== e.parentElement) continue;
  problems.push(`${name(e)} reaches x = ${Math.round(r.right)}` + (cut ? `, cut off by ${name(cut).slice(0, 50)}` : ""));
}
// A number in an output's table (a right-aligned or centred cell, "74.0 %") on one line, not broken before its unit.
for (const cell of document.querySelectorAll("div.cell_output td.text-right, div.cell_output td.text-center")) {
  const text = cell.firstElementChild || cell, line = parseFloat(getComputedStyle(text).lineHeight) || 20;
  if (text.getBoundingClientRect().height > 1.6 * line) problems.push(`a number broken across lines in a table: ${name(cell)}`);
}
const page = document.documentElement.scrollWidth;
if (page > width) problems.unshift(`the page is ${page} px wide and scrolls sideways`);
return problems.slice(0, 8).map((p) => `at ${width} px: ${p}`);
"""

# The ☰ (site navigation) and contents buttons a reader sees, clicked: the panel each should show.
VISIBLE = "const s = getComputedStyle(arguments[0]), r = arguments[0].getBoundingClientRect();" \
          "return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';"

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

    # 1. nothing runs off the page, on the laptop and on the phone (the width the last page ended at first: each
    #    change of width lays a long page out again, which takes seconds)
    first = getattr(browser, "course_size", DESKTOP)
    for size in (first, PHONE if first == DESKTOP else DESKTOP):
        set_width(browser, size)
        problems += browser.execute_script(OFF_THE_PAGE)
        shots = PHONE_SCREENSHOT_PAGES if size == PHONE else SCREENSHOT_PAGES
        if page in shots:
            screenshot(browser, page, shots[page], "phone" if size == PHONE else "laptop")
    # 2. no console warning or error (failed loads are logged here too)
    for entry in browser.get_log("browser"):
        if entry["level"] in ("WARNING", "SEVERE"):
            problems.append(f"console {entry['level'].lower()}: {entry['message'][:200]}")
    # 3. maths typeset, nothing left raw
    if facts["maths"] and state != "typeset":
        problems.append(f"{facts['maths']} maths elements but MathJax is {state}")
    problems += [f"maths not rendered: {t!r}" for t in facts["unrendered"][:5]]
    problems += [f"TeX error: {t!r}" for t in facts["tex_errors"][:5]]
    problems += [f"raw TeX in the text: {m.group(0)[:60]!r}" for m in list(RAW_TEX.finditer(facts["text"]))[:5]]
    # 4. every image loaded
    problems += [f"image did not load: {i['src'][:120]}" for i in images if not i["ok"]]
    # 5. every link inside the site resolves, anchors included
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
    # 6. no request left localhost (the network log sees requests even when they fail)
    requested = set(facts["resources"])
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    problems += [f"request outside localhost: {u[:120]}" for u in sorted(requested) if not is_local(u, server)]

    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


def screenshot(browser, page: str, where: str, width: str, suffix: str = "") -> None:
    """Save what the browser shows of a page, scrolled to the first element matching `where` (or the top)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.execute_script("const e = arguments[0] === 'top' ? null : document.querySelector(arguments[0]);"
                           "if (e) { e.scrollIntoView({block: 'start'}); window.scrollBy(0, -70); } "
                           "else window.scrollTo(0, 0);", where)
    browser.save_screenshot(str(SCREENSHOTS / f"{width}_{page.replace('/', '_').replace('.html', '')}{suffix}.png"))


NAVIGATION_PAGES = ["index.html", "notebooks/01_forward_process.html"]


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["laptop", "phone"])
@pytest.mark.parametrize("page", NAVIGATION_PAGES)
def test_navigation_opens(page, size, server, browser):
    """The ☰ and the contents button a reader sees open their panels (on a phone a dialog over the page; on a laptop
    the ☰ folds the sidebar away and back, and the contents stay beside the text)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not (SITE / page).exists():
        pytest.fail(f"no {page} in the site")
    set_width(browser, size)
    browser.get(server + page)
    browser.get_log("browser")
    width = "phone" if size == PHONE else "laptop"
    for kind, label in (("primary", "☰ (site navigation)"), ("secondary", "contents")):
        buttons = [b for b in browser.find_elements(By.CSS_SELECTOR, f".{kind}-toggle")
                   if browser.execute_script(VISIBLE, b)]
        panel = browser.find_element(By.ID, f"pst-{kind}-sidebar")
        dialog = browser.find_element(By.ID, f"pst-{kind}-sidebar-modal")
        if not buttons:
            assert size == DESKTOP and browser.execute_script(VISIBLE, panel), (
                f"{page} at {size[0]} px: no {label} button to click, and its panel is not shown either")
            continue
        assert len(buttons) == 1, f"{page} at {size[0]} px: {len(buttons)} {label} buttons on screen"
        shown_before = browser.execute_script(VISIBLE, panel)
        buttons[0].click()
        # On a phone (and for the contents on a laptop) a dialog opens with the panel's links in it; on a laptop
        # the ☰ folds the sidebar away, and a second click brings it back.
        opened = WebDriverWait(browser, 3, 0.1).until(lambda d: d.execute_script(
            "const [dialog, panel, before] = arguments;"
            "if (dialog.open) return Array.from(dialog.querySelectorAll('a')).some((a) => a.getBoundingClientRect().width > 0) && 'dialog';"
            "return before && panel.classList.contains('pst-sidebar-hidden') && 'folded';",
            dialog, panel, shown_before), f"{page} at {size[0]} px: the {label} button opens nothing")
        if opened == "dialog":
            if size == PHONE:
                screenshot(browser, page, "top", width, f"_{kind}_open")
            browser.execute_script("arguments[0].close()", dialog)
            continue
        WebDriverWait(browser, 3, 0.1).until(lambda d: not d.execute_script(VISIBLE, panel),
                                             f"{page} at {size[0]} px: the {label} button does not fold the sidebar away")
        buttons[0].click()
        WebDriverWait(browser, 3, 0.1).until(lambda d: d.execute_script(VISIBLE, panel),
                                             f"{page} at {size[0]} px: the {label} button does not bring the sidebar back")
    problems = [e["message"][:200] for e in browser.get_log("browser") if e["level"] in ("WARNING", "SEVERE")]
    assert not problems, f"{page} at {size[0]} px, console:\n  " + "\n  ".join(problems)


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


def words(page: str) -> str:
    """Return a page's text as a reader sees it: tags out, entities decoded, runs of white space as one space."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", page)))


def test_site_has_every_notebook_with_badge_and_download():
    """The home page links every notebook and says how to get the course; each notebook page has its Colab badge,
    a download link to its student copy and a note on where that runs."""
    from course_lib import environment, exercises, notebook_links

    assert NOTEBOOKS, "no notebooks found"
    home = (SITE / "index.html").read_text()
    assert (SITE / "notebooks" / "NOTATION.html").exists(), "no notation page"
    repo = environment.COURSE_REPO
    assert f"git clone {repo}" in words(home) and "make lab" in words(home) and 'id="get-the-whole-course"' in home, (
        "the home page does not say how to get the course (git clone, make lab)")
    for notebook in NOTEBOOKS:
        page = SITE / "notebooks" / f"{notebook.stem}.html"
        assert page.exists(), f"no page for {notebook.name}"
        assert f'href="notebooks/{notebook.stem}.html"' in home, f"the home page does not link {notebook.name}"
        text = page.read_text()
        parser = _Links()
        parser.feed(text)
        colab = [href for href, imgs in parser.links
                 if href.startswith("https://colab.research.google.com/github/") and href.endswith(f"/notebooks/{notebook.name}")
                 and any(src.endswith("colab-badge.svg") and "//" not in src for src in imgs)]
        assert colab, f"{page.name}: no Colab badge (a local badge image linking to Colab)"
        assert "course-download-note" in text and f"git clone {repo}" in words(text) and "../index.html#get-the-whole-course" in text, (
            f"{page.name}: no note under the download on how to get the course")
        downloads = [href for href, _ in parser.links if href.endswith(f"/{notebook.name}") and "://" not in href]
        assert downloads, f"{page.name}: no download link for {notebook.name}"
        committed = json.loads(notebook.read_text())
        download = json.loads((page.parent / downloads[0]).resolve().read_text())
        # the student copy: solutions out (and nothing else of the code), outputs and known-wrong answers gone
        assert [c["cell_type"] for c in download["cells"]] == [c["cell_type"] for c in committed["cells"]]
        code = [exercises.cell_source(c) for c in download["cells"] if c["cell_type"] == "code"]
        assert not any(exercises.BEGIN in c for c in code), f"{page.name}: the download holds the solutions"
        assert sum(c.count(exercises.PLACEHOLDER) for c in code) == exercises.count_exercises(committed)
        restored = exercises.restore_solutions(download, committed)
        assert [exercises.cell_source(c) for c in restored["cells"] if c["cell_type"] == "code"] == [
            exercises.cell_source(c) for c in committed["cells"] if c["cell_type"] == "code"], (
            f"{page.name}: the download is not the student copy of notebooks/{notebook.name} (rebuild: make site)")
        assert all(not c.get("outputs") and "wrong_answers" not in c.get("metadata", {}) for c in download["cells"])
        # read outside the repository: no relative link, and each link into the repository names one of its files
        markdown = list(notebook_links.markdown_texts(download))
        assert not [t for m in markdown for t in notebook_links.relative_links(m)], f"{page.name}: relative link in the download"
        for m in markdown:
            for path in re.findall(re.escape(repo) + r"/(?:blob|tree)/main/([^)\s#\"'>]+)", m):
                assert (ROOT / urllib.parse.unquote(path)).exists(), f"{page.name}'s download links {path}, not in the repository"
