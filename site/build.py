"""Build the course website into _site/ from the notebooks as committed (nothing is executed).   [make site]

    python site/build.py [--out _site] [--work build/site-src]

Steps: (1) lay out a Sphinx source folder in --work: a home page with the course map, the notation page, each
notebook (its Colab badge pointed at a local image, a download link added, widget outputs replaced by a note,
since a static page has no kernel), the untouched .ipynb files for download, and MathJax copied from the npm
package that `make site-install` put in site/node_modules; (2) run Sphinx with myst-nb (conf.py beside this
file) into --out. Nothing here reads the network, and no page it writes asks for anything outside _site/.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
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

sys.path.insert(0, str(ROOT))


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


def repo_links(text: str, repo: str) -> str:
    """Point links to the repository's other files (../course_lib/x.py, ../README.md) at the repository online.

    The site holds the notebooks and the notation page only; a relative link out of notebooks/ would break there.
    """
    def online(m: re.Match) -> str:
        path = posixpath.normpath(posixpath.join("notebooks", m.group(1)))
        kind = "tree" if m.group(1).endswith("/") or "." not in posixpath.basename(path) else "blob"
        return f"]({repo}/{kind}/main/{path}{m.group(2) or ''})"
    return re.sub(r"\]\((\.\./[^)\s#]*)(#[^)\s]*)?\)", online, text)


def join(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def prepare_notebook(path: Path, repo: str) -> dict:
    """Return the notebook as the site shows it: local badges, a download link, widget outputs as a note."""
    nb = json.loads(path.read_text())
    nb["metadata"].pop("widgets", None)  # a widget state would make the page load a widget manager from a CDN
    download = f"{{download}}`Download the notebook (.ipynb) </downloads/{path.name}>`"
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
            cell["source"] = text
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME in data:
                output["data"] = {"text/html": WIDGET_NOTE}
            elif "text/markdown" in data:
                data["text/markdown"] = repo_links(local_badges(join(data["text/markdown"])), repo)
    return nb


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
Open one in Colab with its badge, or download the `.ipynb` and run it in JupyterLab; every symbol is in the
[notation table](notebooks/NOTATION.md).

{{.course-map}}
{chr(10).join(table)}

## Run it on your own machine

```bash
make lab     # installs the pinned stack into .venv, then opens the course in JupyterLab
make test    # runs the unit tests and every notebook under nbval
```

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
        shutil.copy(path, work / "downloads" / path.name)  # byte for byte as committed
        (work / "notebooks" / path.name).write_text(json.dumps(prepare_notebook(path, repo), indent=1))
    (work / "index.md").write_text(home_page(repo, rows))


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
        print(f"site: {len(rows)} notebooks, the home page and the notation page in {args.out} "
              f"({time.perf_counter() - start:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
