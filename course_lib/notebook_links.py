"""Relative links in the notebooks' markdown: find them, point them elsewhere, check that they resolve.   [make student]

A learner reads the notebooks in other places than notebooks/: a student copy in student/ (`make student`), a
downloaded copy (the website), a page of the website. A relative link such as [the notation table](NOTATION.md)
resolves only where its target lies beside it, so each copy rewrites its links for where it lies (`rewrite`,
`mover`), and the tests check that every one of them resolves (`unresolved`).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from course_lib import environment
from course_lib.validation import CourseInputError

# [text](target), ![alt](target "title") and <target>; href="target" and src="target" in inline HTML.
_MARKDOWN = re.compile(r"(\]\(\s*<?)([^)\s>]+)(>?(?:\s+\"[^\"]*\")?\s*\))")
_HTML = re.compile(r"(\b(?:href|src)\s*=\s*[\"'])([^\"']+)([\"'])")
# Not a file beside the notebook: a scheme (https:, mailto:, attachment:), a path from a root (/x), an #anchor.
_NOT_RELATIVE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|/|#)")


def is_relative(target: str) -> bool:
    """Return True for a link target that names a file relative to the page (NOTATION.md, ../README.md#x)."""
    return not _NOT_RELATIVE.match(target)


def split_target(target: str) -> tuple[str, str]:
    """Return a link target's path, percent-decoded, and its #fragment (with the '#', or "")."""
    path, hash_, fragment = target.partition("#")
    return urllib.parse.unquote(path), hash_ + fragment


def relative_links(text: str) -> list[str]:
    """Return the relative link targets of one markdown text, in order (inline links, images, HTML href/src)."""
    return [m.group(2) for pattern in (_MARKDOWN, _HTML) for m in pattern.finditer(text) if is_relative(m.group(2))]


def rewrite(text: str, relink: Callable[[str], str]) -> str:
    """Return the markdown text with each relative link target t replaced by relink(t); all else unchanged."""
    def swap(m: re.Match) -> str:
        target = m.group(2)
        return m.group(1) + (relink(target) if is_relative(target) else target) + m.group(3)
    for pattern in (_MARKDOWN, _HTML):
        text = pattern.sub(swap, text)
    return text


def markdown_texts(notebook: dict) -> Iterator[str]:
    """Yield the source of each markdown cell of a notebook (nbformat JSON)."""
    environment.check_notebook(notebook)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            yield "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def mover(source: Path, dest: Path, copied: Iterable[str] = ()) -> Callable[[str], str]:
    """Return relink(target) for a notebook moved from folder `source` to folder `dest`.

    A link to a file whose name is in `copied` (written into `dest` beside the copy) stays as it is; a link to
    any other file that exists from `source` becomes the path to that file from `dest`; a link that names no
    file (maths that looks like a link, a typo) is left alone, for `unresolved` to report.
    """
    source, dest, copied = Path(source).resolve(), Path(dest).resolve(), set(copied)

    def relink(target: str) -> str:
        path, fragment = split_target(target)
        if not path or (Path(path).name in copied and "/" not in path):
            return target
        file = (source / path).resolve()
        if not file.exists():
            return target
        return urllib.parse.quote(Path(os.path.relpath(file, dest)).as_posix()) + fragment
    return relink


def unresolved(notebook: dict, folder: Path) -> list[str]:
    """Return the relative link targets of a notebook's markdown that name no file, read from `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseInputError(f"folder must be the folder the notebook lies in, got {folder} (not a folder).")
    return [target for text in markdown_texts(notebook) for target in relative_links(text)
            if split_target(target)[0] and not (folder / split_target(target)[0]).exists()]
