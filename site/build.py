"""Build the course website into _site/ from the notebooks as committed (nothing is executed).   [make site]

    python site/build.py [--out _site] [--work build/site-src]

Steps: (1) lay out a Sphinx source folder in --work: a home page with the course map and how to get the course,
the notation page, each notebook (its Colab badge pointed at a local image, a download link and a note on how to
run the download added, widget outputs replaced by a note, since a static page has no kernel), each notebook's
student copy for download (solutions out, links pointed at the repository online: it is read outside the
repository), and MathJax copied from the npm package that `make site-install` put in site/node_modules; (2) run
Sphinx with myst-nb (conf.py beside this file) into --out; (3) give each figure its size and the smallest size it
may be shrunk to (FIGURE_MIN_SCALE). Nothing here reads the network, and no page asks for anything outside _site/.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
import struct
import sys
import time
from pathlib import Path

SITE = Path(__file__).resolve().parent
ROOT = SITE.parent
NOTEBOOKS = ROOT / "notebooks"
MATHJAX = SITE / "node_modules" / "mathjax" / "es5"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BADGE_URL = "https://colab.research.google.com/assets/colab-badge.svg"
# A markdown Colab badge: [![alt](badge image)](colab link)
BADGE_MD = re.compile(r"\[!\[([^\]]*)\]\(" + re.escape(BADGE_URL) + r"\)\]\(([^)\s]+)\)")
WIDGET_NOTE = ('<p class="course-widget-note">In JupyterLab or on Colab this cell shows interactive controls '
               "(ipywidgets). A web page has no Python kernel behind it, so here the controls are left out; "
               "open the notebook to use them.</p>")

# A figure is shrunk to the text column, but never below this fraction of its own width: further down, the labels
# of a dense figure (notebook 08's attention maps) are too small to read, so on a phone it scrolls sideways
# instead. 0.7 still fits the widest figure (1,046 px) into a laptop's text column (757 px at 1366 px).
FIGURE_MIN_SCALE = 0.7

sys.path.insert(0, str(ROOT))
from course_lib import exercises, notebook_links  # noqa: E402  (the checkout's course_lib, not an installed one)


def course_rows() -> tuple[str, list[dict[str, str]]]:
    """Return the course's repository address and the course map, read from the notebooks themselves."""
    from course_lib import environment
    return environment.COURSE_REPO, environment.course_map(NOTEBOOKS)


def colab_url(repo: str, filename: str) -> str:
    """Return the Open-in-Colab address of notebooks/<filename> (the badges' address, from COURSE_REPO)."""
    return f"https://colab.research.google.com/github/{repo.split('github.com/')[1]}/blob/main/notebooks/{filename}"


def local_badges(text: str) -> str:
    """Point every Colab badge at the site's own badge image (the link still goes to Colab)."""
    return BADGE_MD.sub(lambda m: f"[![{m.group(1)}](/images/colab-badge.svg)]({m.group(2)})", text)


def online(target: str, repo: str) -> str:
    """Return the repository's web address of a link target written relative to notebooks/ (a file or a folder)."""
    path, fragment = notebook_links.split_target(target)
    path = posixpath.normpath(posixpath.join("notebooks", path))
    kind = "tree" if target.split("#")[0].endswith("/") or (ROOT / path).is_dir() else "blob"
    return f"{repo}/{kind}/main/{path}{fragment}"


def repo_links(text: str, repo: str) -> str:
    """Point links to the repository's other files (../course_lib/x.py, ../README.md) at the repository online.

    The site holds the notebooks and the notation page only; a relative link out of notebooks/ would break there.
    """
    return notebook_links.rewrite(text, lambda target: online(target, repo) if target.startswith("../") else target)


def download_copy(path: Path, repo: str) -> dict:
    """Return the notebook a page offers for download: its student copy, every relative link made absolute.

    A downloaded file is opened anywhere (Colab, a laptop's Downloads folder), where no link relative to
    notebooks/ resolves; the repository online is where those files are.
    """
    return exercises.student_copy(json.loads(path.read_text()), relink=lambda target: online(target, repo))


def join(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def prepare_notebook(path: Path, repo: str) -> dict:
    """Return the notebook as the site shows it: local badges, a download link, widget outputs as a note."""
    nb = json.loads(path.read_text())
    nb["metadata"].pop("widgets", None)  # a widget state would make the page load a widget manager from a CDN
    download = f"{{download}}`Download the exercise copy (.ipynb) </downloads/{path.name}>`"
    first_markdown = True
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = repo_links(local_badges(join(cell["source"])), repo)
            if first_markdown:
                first_markdown = False
                if "/images/colab-badge.svg" in text:
                    text = re.sub(r"(\[!\[[^\]]*\]\(/images/colab-badge\.svg\)\]\([^)]+\))",
                                  lambda m: m.group(1) + " " + download, text, count=1)
                else:
                    badge = f"[![Open In Colab](/images/colab-badge.svg)]({colab_url(repo, path.name)})"
                    text = re.sub(r"^(#[^\n]*\n)", lambda m: m.group(1) + f"\n{badge} {download}\n", text, count=1)
                text = re.sub(r"(\{download\}`[^`]*`[^\n]*\n)", lambda m: m.group(1) + "\n" + download_note(repo) + "\n",
                              text, count=1)
            cell["source"] = text
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME in data:
                output["data"] = {"text/html": WIDGET_NOTE}
            elif "text/markdown" in data:
                data["text/markdown"] = repo_links(local_badges(join(data["text/markdown"])), repo)
    return nb


def clone_commands(repo: str) -> str:
    """Return the shell lines that fetch the course and open it: git clone, cd, make lab."""
    return f"git clone {repo}\ncd {repo.rstrip('/').split('/')[-1]}\nmake lab     # installs the pinned stack into .venv, then opens JupyterLab"


def download_note(repo: str) -> str:
    """Return the note under a notebook page's download link: what the file is and where it runs."""
    return (f"{{.course-download-note}}\nThe download is this notebook without its solutions, for you to write "
            f"them. It runs with the course beside it: on Colab, upload it (*File → Upload notebook*) and its first "
            f"cell fetches the course; on your own machine, [get the course](../index.md#get-the-whole-course) "
            f"first (`git clone {repo}`, then `make lab` in its folder) and save the file there.")


def readme_intro() -> str:
    """Return the README's opening paragraphs (between the title and the first section)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    body = []
    for line in lines[1:]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body).strip()


def home_page(repo: str, rows: list[dict[str, str]]) -> str:
    """Return the home page: the README's introduction, the course map with badges and downloads, a toctree."""
    table = ["| notebook | you learn to | time | open |", "|---|---|---|---|"]
    for row in rows:
        title = row["title"].replace("|", "\\|")
        goal = row["goal"].replace("|", "\\|").rstrip(";").rstrip()
        table.append(
            f"| [{title}](notebooks/{row['file']}) | {goal} | {row['time']} "
            f"| [![Open In Colab](/images/colab-badge.svg)]({colab_url(repo, row['file'])})"
            f"<br>{{download}}`.ipynb <downloads/{row['file']}>` |")
    # The sidebar names each notebook by the part of its title before the colon ("03 · Training a DDPM").
    toctree = "\n".join(["Notation <notebooks/NOTATION>"] + [
        f"{r['title'].split(':')[0].strip()} <notebooks/{Path(r['file']).stem}>" for r in rows])
    return f"""# Diffusion, from the equations to locked-image editing

{readme_intro()}

## The notebooks

Each page below is a notebook as it is committed, with the outputs it printed and the figures it drew.
Open one in Colab with its badge, or download its exercise copy (`.ipynb`, the solutions taken out) and run it
on Colab or in the course on your own machine ([below](#get-the-whole-course)); every symbol is in the
[notation table](notebooks/NOTATION.md).

{{.course-map}}
{chr(10).join(table)}

## Get the whole course

The notebooks need the course around them: its package `course_lib`, its data and its trained checkpoints, all in
one repository, [{repo.split('github.com/')[1]}]({repo}). On a machine with Python 3.11 and `make`:

```bash
{clone_commands(repo)}
make student # writes each notebook's exercise copy (solutions taken out) into student/
make test    # runs the unit tests and every notebook under nbval
```

The notebooks themselves are in `notebooks/`, with their solutions; the [README]({repo}#readme) says more (another Python, a
machine without internet, teaching the course).

```{{toctree}}
:hidden:
:maxdepth: 1

{toctree}
```
"""


def lay_out(work: Path, repo: str, rows: list[dict[str, str]]) -> None:
    """Write the Sphinx source folder: conf.py, static files, MathJax, pages and downloads."""
    if not (MATHJAX / "tex-chtml.js").exists():
        raise SystemExit(f"MathJax is missing ({MATHJAX}). Install the site's tools first: make site-install")
    if work.exists():
        shutil.rmtree(work)
    (work / "notebooks").mkdir(parents=True)
    (work / "downloads").mkdir()
    (work / "images").mkdir()
    shutil.copy(SITE / "conf.py", work / "conf.py")
    shutil.copytree(SITE / "static", work / "_static")
    shutil.copytree(MATHJAX, work / "_static" / "mathjax",
                    ignore=shutil.ignore_patterns("*-svg*.js", "mml-*.js", "node-main.js", "tex-mml-*.js",
                                                  "tex-chtml-full*.js", "latest.js"))
    shutil.copy(SITE / "static" / "colab-badge.svg", work / "images" / "colab-badge.svg")
    shutil.copy(NOTEBOOKS / "NOTATION.md", work / "notebooks" / "NOTATION.md")
    for row in rows:
        path = NOTEBOOKS / row["file"]
        (work / "downloads" / path.name).write_text(json.dumps(download_copy(path, repo), indent=1, ensure_ascii=False) + "\n")
        (work / "notebooks" / path.name).write_text(json.dumps(prepare_notebook(path, repo), indent=1))
    (work / "index.md").write_text(home_page(repo, rows))


def png_size(path: Path) -> tuple[int, int]:
    """Return a PNG's width and height in pixels, read from its header."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


FIGURE = re.compile(r'<img alt="([^"]*)" src="((?:\.\./)*_images/[^"/]+\.png)" />')


def size_figures(out: Path) -> int:
    """Give every output figure of the built pages its width and height, and its floor (FIGURE_MIN_SCALE)."""
    count = 0
    for page in out.rglob("*.html"):
        html = page.read_text()

        def sized(m: re.Match) -> str:
            width, height = png_size((page.parent / m.group(2)).resolve())
            floor = min(width, round(FIGURE_MIN_SCALE * width))
            return (f'<img alt="{m.group(1)}" src="{m.group(2)}" width="{width}" height="{height}" '
                    f'style="min-width: {floor}px" />')
        html, n = FIGURE.subn(sized, html)
        if n:
            page.write_text(html)
            count += n
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_site")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "site-src")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    repo, rows = course_rows()
    lay_out(args.work, repo, rows)
    from sphinx.cmd.build import build_main
    if args.out.exists():
        shutil.rmtree(args.out)
    os.environ["COURSE_REPO"] = repo
    # -W --keep-going: a broken link, reference or image in a page fails the build, with every problem listed.
    # Sphinx writes into --work (myst-nb puts its image files beside the output folder), then the result moves.
    html = args.work / "_build" / "html"
    code = build_main(["-b", "html", "-q", "-W", "--keep-going", "-d", str(args.work / "_build" / "doctrees"),
                       str(args.work), str(html)])
    if code == 0:
        shutil.move(html, args.out)
        figures = size_figures(args.out)
        print(f"site: {len(rows)} notebooks ({figures} figures), the home page and the notation page in {args.out} "
              f"({time.perf_counter() - start:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
