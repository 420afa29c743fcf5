"""The reader's second pass: the objects of a request and the edits of an instruction put in the order the model knows.   [nb 09]

The reader's first pass (reader.read) leaves the world's words in the order they were typed:
"circle yellow, in the bottom right", "squares: blue in the top left, yellow in the bottom right",
"a red square, below a blue triangle". A 0.9 M-parameter model trained on a few frames reads its
frames' orders well and other orders badly. Where the words pin the objects down, this pass
rewrites them into the phrasing of the training captions, so the model composes from its own order:

    groups     the words between commas and "and": each a count, colours, a shape, places
    borrowing  a group without a shape takes the one shape the request names ("squares: blue
               top left, yellow bottom right"), a group of places alone takes the group before it
               ("2 green circles, top right and bottom right")
    lines      "three red triangles in the middle row": three objects along the row (row:r,
               col:c tokens from the first pass), and so does a plural without a count ("the top
               row: blue squares", PLURAL); "a red, a green and a blue circle in the top row"
               colour them in reading order
    relations  "a red square, and under that a blue triangle", "below a red circle there is a
               green circle", "a blue box and a yellow box to its right": two objects and one
               relation, written "<first> above <second>" or "<first> to the left of <second>";
               a colour alone takes the one shape named ("blue triangle, then a yellow one to
               its right"), a bare noun after the relation is the object named before ("red
               ball. blue box under ball."), and a pair's shape is said once ("a pair of
               squares, the yellow one to the left of the green one")
    again      objects named first, then each placed by its shape or colour ("a yellow circle and
               a blue square, the circle in the top left and the square in the bottom right"),
               one object said again and placed once ("A green circle. A green circle who? A
               green circle in the top right"), a count's places before its object ("both top
               corners get a green square"), and a vague word after placed objects ("...,
               something subtle") naming no object of its own

    edits      an instruction split at commas and "and" into its edits, each written as the world's
               canonical instruction ("triangle -> cherry red": "make the triangle red"; "the one
               at the top, could it be navy?": "make the thing at the top blue"), joined by CLAUSE;
               the writer's model answers each edit alone. A later edit's "it" is the object the
               edit before named, an edit said twice is said once, an object brought in with "a"
               and a place is an add ("could we have a blue circle at the top"), a plural names
               every object of its kind ("make the circles green": EVERY, one edit each), "both"
               or "them" alone every object of the scene ("make both blue": EVERY thing), and an
               edit said again is said once ("the square - delete, delete, delete")

Where the words do not pin the objects down (two objects without places, a count that does not
match its places, an edit without a value), the first pass's words go to the model unchanged.
"""

from __future__ import annotations

from course_lib import shapes

ROW_COL = ("row:", "col:", "diag:")  # line tokens of the first pass: a row, a column, a diagonal (0: from the top left)
PLACE_OF = {p: cell for cell, p in shapes.POSITION_PHRASES.items()}
COUNTS = {"a": 1, "one": 1, "two": 2, "three": 3}
RELATIONS = ("above", "below", "to the left of", "to the right of")
NOISE = ("the", "each", "all", "to", "into", "both", "it", "thing", "one")
PLURAL = "<pl>"  # the first pass's mark after a plural shape noun ("the circles", "red triangles"); never shown the model
EVERY = "every"  # an instruction's referent for all the objects a plural names ("make the circles green")


def line_cells(token: str) -> list[tuple[int, int]]:
    """Return the three cells of a line token ("row:0" the top row left to right, "col:2" the right column top down)."""
    k = int(token[-1])
    if token.startswith("diag:"):
        return [(r, r) for r in range(3)] if k == 0 else [(r, 2 - r) for r in range(3)]
    return [(k, c) for c in range(3)] if token.startswith("row:") else [(r, k) for r in range(3)]


def line_cell(token: str) -> tuple[int, int]:
    """Return the one cell a line names when it holds one object: the middle of the row or column."""
    k = int(token[-1])
    return (1, 1) if token.startswith("diag:") else (k, 1) if token.startswith("row:") else (1, k)


def lines_as_cells(out: list[str]) -> list[str]:
    """Return the words with every line token written as its one cell's phrase (what the model reads)."""
    return [shapes.POSITION_PHRASES[line_cell(w)] if w.startswith(ROW_COL) else w for w in out]


def _split(out: list[str]) -> list[list[str]]:
    groups, cur = [], []
    for w in out:
        if w in (",", "and"):
            if cur:
                groups.append(cur)
            cur = []
        else:
            cur.append(w)
    if cur:
        groups.append(cur)
    return groups


def _record(group: list[str]) -> dict:
    rec = {"count": None, "colours": [], "shape": None, "thing": False, "cells": [], "line": None, "other": []}
    for w in group:
        if w in shapes.COLOURS:
            rec["colours"].append(w)
        elif w in shapes.SHAPES:
            if rec["shape"] not in (None, w):
                rec["other"].append(w)
            rec["shape"] = w
        elif w in PLACE_OF:
            rec["cells"].append(PLACE_OF[w])
        elif w.startswith(ROW_COL):
            rec["line"] = w
        elif w in ("two", "three"):
            rec["count"] = COUNTS[w]
        elif w == PLURAL:
            rec["plural"] = True
        elif w == "thing":
            rec["thing"] = True
        elif w not in ("a", "one") and w not in NOISE:
            rec["other"].append(w)
    return rec


def _phrase(colour: str, shape: str, cell) -> str:
    return f"a {colour} {shape}" + (f" {shapes.POSITION_PHRASES[cell]}" if cell is not None else "")


def _join(phrases: list[str]) -> list[str]:
    text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return text.replace(",", " ,").split()


def _empty(rec: dict) -> bool:
    return not (rec["colours"] or rec["shape"] or rec["thing"] or rec["cells"] or rec["line"] or rec["count"] or rec["other"])


def _places_only(rec: dict) -> bool:
    return not rec["colours"] and rec["shape"] is None and not rec["thing"] and not rec["count"] and bool(
        rec["cells"] or rec["line"])


def _resolved(cells: list, lines: list[str]) -> tuple[list, str | None] | None:
    # cells and lines named together -> (cells, a line left whole or None): a row and a column meet in a cell, a
    # cell on the line named with it keeps the cell ("left side, middle row"); None where they disagree
    rows = [int(w[-1]) for w in lines if w.startswith("row:")]
    cols = [int(w[-1]) for w in lines if w.startswith("col:")]
    if not lines:
        return cells, None
    if len(lines) == 1 and cells and not lines[0].startswith("diag:"):
        k = int(lines[0][-1])  # "top row, far left", "bottom row, centre cell": the cell named on the other axis
        if lines[0].startswith("row:") and all(c[0] == 1 for c in cells):
            return [(k, c[1]) for c in cells], None
        if lines[0].startswith("col:") and all(c[1] == 1 for c in cells):
            return [(c[0], k) for c in cells], None
    if any(w.startswith("diag:") for w in lines):
        return ([], lines[0]) if len(lines) == 1 and not cells else None
    if len(rows) == 1 and len(cols) == 1 and not cells:
        return [(rows[0], cols[0])], None
    if len(lines) == 1 and all((c[0] if rows else c[1]) == (rows or cols)[0] for c in cells):
        return (cells, None) if cells else ([], lines[0])
    return None


def _fields_joined(records: list[dict]) -> list[dict]:
    # "circle, red, top left and square, blue, bottom right": fields of one value each, an object's shape, colour and
    # place in threes, become one record per object
    def kind(r):
        values = [k for k, v in (("colour", r["colours"]), ("shape", r["shape"]), ("place", r["cells"])) if v]
        return values[0] if len(values) == 1 and len(r["colours"]) <= 1 and len(r["cells"]) <= 1 and not (
            r["count"] or r["line"] or r["thing"]) else None
    kinds = [kind(r) for r in records]
    if len(records) < 6 or len(records) % 3 or None in kinds or any(
            len(set(kinds[k:k + 3])) != 3 for k in range(0, len(records), 3)):
        return records
    joined = []
    for k in range(0, len(records), 3):
        three = records[k:k + 3]
        joined.append(dict(three[0], colours=[c for r in three for c in r["colours"]],
                           shape=next(r["shape"] for r in three if r["shape"]), cells=[c for r in three for c in r["cells"]]))
    return joined


def _object_unplaced(r: dict) -> bool:
    return len(r["colours"]) == 1 and r["shape"] is not None and not (r["cells"] or r["line"] or r["count"] or r["thing"])


def _named_again(records: list[dict]) -> list[dict]:
    # objects named first, then each again with its place: "a yellow circle and a blue square, the circle in the top
    # left and the square in the bottom right" (by shape or colour, each naming one of them); "A green circle. A green
    # circle who? A green circle in the top right" (one object said three times, placed once)
    same = {(tuple(r["colours"]), r["shape"]) for r in records}
    placed = [r for r in records if r["cells"] or r["line"]]
    if len(records) > 1 and len(same) == 1 and len(placed) == 1 and not any(r["count"] or r["thing"] for r in records) \
            and len(records[0]["colours"]) == 1 and records[0]["shape"]:
        return placed
    lead = 0
    while lead < len(records) and _object_unplaced(records[lead]):
        lead += 1
    rest = records[lead:]
    if lead < 2 or len(rest) != lead:
        return records
    placed_objects, used = [], set()
    for r in rest:
        if r["count"] or r["thing"] or len(r["colours"]) > 1 or not (r["cells"] or r["line"]) or len(r["cells"]) > 1 \
                or not (r["colours"] or r["shape"]):
            return records
        match = [k for k, o in enumerate(records[:lead]) if (r["shape"] in (None, o["shape"]))
                 and (not r["colours"] or r["colours"] == o["colours"])]
        if len(match) != 1 or match[0] in used:
            return records
        used.add(match[0])
        placed_objects.append(dict(records[match[0]], cells=r["cells"], line=r["line"]))
    return placed_objects


def _along_a_line(records: list[dict]) -> list[tuple[str, str, object]] | None:
    # three objects along one named line, in reading order: "a trio of squares across the top row: red, green, blue",
    # "the bottom row holds a blue ball, a red ball and a yellow ball", "Three triangles, all blue, along the bottom row"
    lines = [r["line"] for r in records if r["line"]]
    if len(lines) != 1 or lines[0].startswith("diag") or any(r["cells"] or r["thing"] for r in records):
        return None
    cells = line_cells(lines[0])
    head, rest = records[0], records[1:]
    if head["count"] == 3 and head["shape"] and not head["colours"] and head["line"] and len(rest) == 3 and all(
            len(r["colours"]) == 1 and r["shape"] is None and not r["count"] for r in rest):
        return [(r["colours"][0], head["shape"], cell) for r, cell in zip(rest, cells)]
    if _places_only(head) and len(rest) == 3 and all(len(r["colours"]) == 1 and r["shape"] and not r["count"]
                                                      for r in rest):
        return [(r["colours"][0], r["shape"], cell) for r, cell in zip(rest, cells)]
    counts = [r["count"] for r in records if r["count"]]
    named = {r["shape"] for r in records if r["shape"]}
    colours = {c for r in records for c in r["colours"]}
    if counts == [3] and len(named) == 1 and len(colours) == 1 and sum(bool(r["shape"]) for r in records) == 1 and all(
            len(r["colours"]) <= 1 for r in records):
        return [(next(iter(colours)), next(iter(named)), cell) for cell in cells]
    return None


def _objects(records: list[dict]) -> list[tuple[str, str, object]] | None:
    # every record's objects as (colour, shape, cell or None), or None where the words do not pin them down
    records = [r for r in records if not _empty(r)]
    if not records or any(r["other"] for r in records):
        return None
    records = _named_again(_fields_joined(records))
    if len(records) > 1 and records[-1]["thing"] and _empty(dict(records[-1], thing=False)) and all(
            r["colours"] and r["shape"] and (r["cells"] or r["line"]) for r in records[:-1]):
        records = records[:-1]  # "a navy square in the top right, something subtle": a word for it, not an object
    shapes_named = {r["shape"] for r in records if r["shape"]}
    colours_named = {c for r in records for c in r["colours"]}
    lead = next((k for k, r in enumerate(records) if not (r["colours"] and r["shape"] is None and not (
        r["thing"] or r["cells"] or r["line"] or r["count"]))), len(records))
    named_later = {c for r in records[lead:] for c in r["colours"]}
    if 0 < lead and sum(bool(r["colours"] and r["shape"]) for r in records[lead:]) >= 2 and all(
            r["colours"] and r["shape"] or _places_only(r) for r in records[lead:]) and all(
            c in named_later for r in records[:lead] for c in r["colours"]):
        records = records[lead:]  # "Study in Blue and Yellow: a blue triangle ..., a yellow circle ...": a title
    along = _along_a_line(records)
    if along is not None:
        return along
    header_count = None
    first = records[0]
    if len(records) > 1 and first["count"] and not (first["colours"] or first["shape"] or first["thing"] or first["cells"]
                                                    or first["line"]):
        header_count, records = first["count"], records[1:]  # "three friends: a red circle ..., ...": the count's list
        first = records[0]
    if first["count"] and first["shape"] and len(first["colours"]) <= 1 and len(records) == first["count"] and all(
            r["shape"] is None and not r["count"] and r["colours"] for r in records[1:]):
        header_count = first["count"]  # "3 dots: yellow at the top, yellow on the left, red on the right"
        records[0] = dict(first, count=None)
    elif len(records) > 1 and not first["colours"] and first["shape"] and not first["cells"] and not first["line"]:
        header_count = first["count"]  # "squares: blue in the top left, yellow in the bottom right"
        records = records[1:]
    if len(records) > 1 and _places_only(records[0]) and records[0]["line"] and not records[0]["cells"] and all(
            r["cells"] and not r["line"] for r in records[1:]):
        axis, k = records[0]["line"][:3], int(records[0]["line"][-1])  # "bottom row: red circle left, green ... centre"
        if not all((c[0] if axis == "row" else c[1]) == 1 for r in records[1:] for c in r["cells"]):
            return None
        records = [dict(r, cells=[(k, c[1]) if axis == "row" else (c[0], k) for c in r["cells"]]) for r in records[1:]]
    merged: list[dict] = []
    pending: list[dict] = []  # records of places alone, waiting for their object
    for rec in records:
        if _places_only(rec) or rec["count"] and not rec["colours"] and rec["shape"] is None and not rec["thing"]:
            last = merged[-1] if merged else None
            if not rec["count"] and last and ((last["count"] or 1) > len(last["cells"]) > 0 or last["count"] and not
                                              last["cells"] and not rec["line"]):
                last["cells"] = last["cells"] + rec["cells"]  # "2 green circles, top right and bottom right"
            elif not rec["count"] and last and not pending and not _places_only(records[0]) and not (
                    last["cells"] or last["line"] or last["count"] or last.get("colour_list")):
                last["cells"], last["line"] = rec["cells"], [rec["line"]] if rec["line"] else []
                # "Yellow triangle, top right. Green circle, middle.": a list that names each object first
            else:
                pending.append(rec)  # "both top corners: a red triangle in each", "top row: red, green, blue circles"
            continue
        rec = dict(rec)
        own_places = bool(rec["cells"] or rec["line"])
        rec["line"] = [rec["line"]] if rec["line"] else []
        if pending and own_places and len(pending) == 1 and pending[0]["line"] and not pending[0]["cells"] \
                and len(rec["cells"]) == 1 and not rec["line"][0:1] and not rec["count"]:
            axis, k = pending[0]["line"][:3], int(pending[0]["line"][-1])  # "top row: blue circle on the left. middle
            r, c = rec["cells"][0]  # row: red square on the right.": each row's header and the object's column meet
            if (r if axis == "row" else c) != 1:
                return None
            rec["cells"], pending = [(k, c) if axis == "row" else (r, k)], []
        if len(pending) == 1 and pending[0]["count"] and pending[0]["cells"] and own_places and not rec["count"] \
                and not rec["line"] and pending[0]["count"] == len(pending[0]["cells"]) + len(rec["cells"]):
            rec["cells"], rec["count"], pending = pending[0]["cells"] + rec["cells"], pending[0]["count"], []
            # "both top corners get a green square": the count's places, then the object with the last of them
        if pending:
            if own_places:
                return None
            rec["cells"] = [c for p in pending for c in p["cells"]]
            rec["line"] = [p["line"] for p in pending if p["line"]]
            rec["count"] = rec["count"] or next((p["count"] for p in pending if p["count"]), None)
            pending = []
        if merged and merged[-1].get("colour_list") and (rec["colours"] or rec["shape"]):
            head = merged.pop()  # "a red, a green and a blue circle ...": the colours share the last one's shape
            rec["colours"] = head["colours"] + rec["colours"]
            if not (rec["cells"] or rec["line"]):
                rec["cells"], rec["line"] = head["cells"], head["line"]
            elif head["cells"] or head["line"]:
                return None
        if rec["colours"] and rec["shape"] is None and not rec["thing"] and not own_places and rec["count"] is None:
            rec["colour_list"] = True
        merged.append(rec)
    if pending:
        if not merged or merged[-1]["cells"] or merged[-1]["line"]:
            return None
        merged[-1]["cells"] = [c for p in pending for c in p["cells"]]
        merged[-1]["line"] = [p["line"] for p in pending if p["line"]]
    if merged and merged[-1].get("colour_list"):
        if len(merged) > 1:
            return None
        merged[-1]["colour_list"] = False
    objects = []
    for rec in merged:
        shape = rec["shape"] or ("thing" if rec["thing"] else None) or (
            next(iter(shapes_named)) if len(shapes_named) == 1 else None) or ("thing" if len(merged) == 1 else None)
        colours = rec["colours"] or ([next(iter(colours_named))] if len(colours_named) == 1 else [])
        places = _resolved(rec["cells"], rec["line"])
        if len(rec["line"]) > 1 and not rec["cells"] and all(w.startswith(rec["line"][0][:4]) for w in rec["line"]):
            return [("many", shape or "thing", None)] * (3 * len(rec["line"]))  # "the whole middle row and top row"
        if shape is None or not colours or places is None:
            return None
        cells, line = places
        n = rec["count"] or (3 if rec.get("plural") and line and not cells else max(len(colours), len(cells), 1))
        if line:
            cells = line_cells(line) if n == 3 else [line_cell(line)]
            if len(set(colours)) > 1:
                cells = sorted(cells)  # colours along a line go in reading order
        if len(colours) == 1:
            colours = colours * n
        if len(colours) != n or cells and len(cells) != n or not cells and n > 1:
            return None
        objects += [(c, shape, cells[k] if cells else None) for k, c in enumerate(colours)]
    if header_count and header_count != len(objects):
        return None
    if any(o[0] == "many" for o in objects):
        return objects
    if not objects or len(objects) > shapes.MAX_OBJECTS or len(objects) > 1 and any(o[2] is None for o in objects):
        return None
    placed = [o[2] for o in objects if o[2] is not None]
    return objects if len(placed) == len(set(placed)) else None


def _single(out: list[str]) -> list[tuple[str, str, object]] | None:
    # one object however it is said: one shape mentioned without "the" (a later "the square", "it" is the same one),
    # one colour, at most one place ("put a square in the bottom left and make it red")
    if any(w in ("two", "three", "many") for w in out) or PLURAL in out and any(w.startswith(ROW_COL) for w in out):
        return None  # counts, and plurals along a line ("the top row: blue squares"), are for _objects
    mentions = [k for k, w in enumerate(out) if (w in shapes.SHAPES or w == "thing")
                and not any(out[j] == "the" for j in range(max(0, k - 2), k))]
    named = {w for w in out if w in shapes.SHAPES}
    colours = {w for w in out if w in shapes.COLOURS}
    cells = {PLACE_OF[w] for w in out if w in PLACE_OF}
    lines = sorted({w for w in out if w.startswith(ROW_COL)})
    if len(mentions) > 1 or len(named) > 1 or len(colours) != 1 or not (named or mentions or len(out) <= 2):
        return None
    places = _resolved(sorted(cells), lines)
    if places is None or len(places[0]) > 1:
        return None
    cell = places[0][0] if places[0] else (line_cell(places[1]) if places[1] else None)
    return [(colours.pop(), named.pop() if named else "thing", cell)]


def _relation(out: list[str]) -> list[str] | None:
    # two objects and one relation (or "above: A, below: B"): "<first> above <second>" / "<first> to the left of <second>"
    rels = [k for k, w in enumerate(out) if w in RELATIONS]
    if len(rels) == 1 and rels[0] + 1 < len(out) and out[rels[0] + 1] == "it" and sum(w in PLACE_OF for w in out) == 1:
        out = [w for w in out if w not in PLACE_OF]  # "on the left a green ball, and to its right a red ball": relative
        rels = [k for k, w in enumerate(out) if w in RELATIONS]
    out = ["it" if w in shapes.SHAPES and k and out[k - 1] in RELATIONS and w in out[:k - 1] else w
           for k, w in enumerate(out)]  # "red ball. blue box under ball.": the ball named before
    named = {w for w in out if w in shapes.SHAPES}
    if len(out) > 2 and out[0] == "two" and out[1] in shapes.SHAPES and out[1] not in out[2:]:
        out = out[2:]  # "a pair of squares, the yellow one to the left of the green one": the pair's shape, named once
        rels = [k for k, w in enumerate(out) if w in RELATIONS]
    units, k = [], 0
    while k < len(out):
        if out[k] in shapes.COLOURS and len(named) == 1 and (k + 1 == len(out) or out[k + 1] in RELATIONS) and (
                k == 0 or out[k - 1] not in shapes.COLOURS):
            units.append((k, out[k], next(iter(named))))  # "blue triangle, then a yellow one to its right"
        elif out[k] in shapes.SHAPES or out[k] == "thing":
            j = k - 1
            colours = []
            while j >= 0 and out[j] in shapes.COLOURS:
                colours.insert(0, out[j])
                j -= 1
            if len(colours) != 1 or out[k] == "thing" and not colours:
                return None
            units.append((k, colours[0], out[k] if out[k] != "thing" else "square"))
        elif out[k] in PLACE_OF or out[k].startswith(ROW_COL) or out[k] in ("two", "three"):
            return None
        k += 1
    if len(units) != 2:
        return None
    (k1, c1, s1), (k2, c2, s2) = units
    first, second = f"a {c1} {s1}", f"a {c2} {s2}"
    if len(rels) == 2 and rels[0] < k1 < rels[1] < k2 and {out[rels[0]], out[rels[1]]} in ({"above", "below"},
                                                                                       {"to the left of", "to the right of"}):
        rel, a, b = out[rels[0]], first, second  # "above: a green square, below: a blue triangle"
    elif len(rels) == 1:
        r = rels[0]
        rel = out[r]
        pronoun = r + 1 < len(out) and out[r + 1] in ("it", "one")
        if r < k1:  # "below a red circle, a green circle": the second object stands <rel> the first
            a, b = second, first
        elif k1 < r < k2 and not pronoun:  # "a red circle above a green circle"
            a, b = first, second
        elif k1 < r < k2 or r > k2 and (pronoun or r == len(out) - 1):
            a, b = second, first  # "a blue triangle and, above it, a yellow square"; "... a square to its right";
            # "Picture a blue square. Now put a yellow circle underneath.": the last object stands <rel> the one before
        else:
            return None
    else:
        return None
    if rel == "below":
        rel, a, b = "above", b, a
    elif rel == "to the right of":
        rel, a, b = "to the left of", b, a
    return f"{a} {rel} {b}".split()


def arrange_request(out: list[str]) -> list[str]:
    """Return a request's first-pass words rewritten in a training caption's order, or with lines as cells if not pinned down.   [nb 09]"""
    background = []
    if len(out) >= 2 and out[-1] == "background" and out[-2] in shapes.BACKGROUNDS:
        background, out = out[-2:], out[:-2]
        while out and out[-1] in (",", "and"):
            out = out[:-1]
    if not out:
        return lines_as_cells(out + background)
    arranged = None
    if any(w in RELATIONS for w in out):
        arranged = _relation([w for w in out if w not in (",", "and", "the", "a", "one")])
        if arranged is None and sum(w in PLACE_OF for w in out) >= 2:
            # "at the very top a golden circle, and straight below it at the very bottom a green triangle": each object
            # has its cell, which says more than the relation does
            cells = [w for k, w in enumerate(out) if not (w in RELATIONS or w == "it" and k and out[k - 1] in RELATIONS)]
            objects = _objects([_record(g) for g in _split(cells)])
            arranged = _join([_phrase(c, s, cell) for c, s, cell in objects]) if objects and all(
                cell is not None for _, _, cell in objects) and objects[0][0] != "many" else None
    else:
        objects = _single(out) or _objects([_record(g) for g in _split(out)])
        if objects and objects[0][0] == "many":  # whole lines, more objects than a scene holds: the count refuses
            arranged = ["many", objects[0][1]] * (len(objects) // 3)
        elif objects:
            arranged = _join([_phrase(c, s, cell) for c, s, cell in objects])
    words = arranged if arranged is not None else lines_as_cells(out)
    return words + ([","] + background if background else [])


CLAUSE = " ; "  # between the edits of an instruction the second pass has split: the model answers each alone
_VERBS = ("make", "remove", "add")


def _referent(tokens: list[str]) -> str | None:
    # "the [colour] [shape | thing] [place]" or "it" from a clause's referent words; None if they name no object
    colours = [w for w in tokens if w in shapes.COLOURS]
    nouns = [w for w in tokens if w in shapes.SHAPES or w == "thing"]
    places = [w for w in tokens if w in PLACE_OF]
    if len(colours) > 1 or len(set(nouns) - {"thing"}) > 1 or len(places) > 1:
        return None
    if not (colours or nouns or places):
        if any(w in ("both", "them", "all") for w in tokens) and "it" not in tokens:
            return f"{EVERY} thing"  # "make both blue", "make them all blue": every object of the scene
        return "it" if "it" in tokens else None
    noun = next((w for w in nouns if w != "thing"), "thing")
    return " ".join([EVERY if PLURAL in tokens and noun != "thing" else "the", *colours, noun, *places])


def _trailing_value(seg: list[str]) -> bool:
    # a colour or shape after the object's noun or place: the clause says a new value ("the triangle green")
    at = [k for k, w in enumerate(seg) if w in shapes.SHAPES or w == "thing" or w in PLACE_OF]
    nouns = [k for k, w in enumerate(seg) if w in shapes.SHAPES or w == "thing"]  # a shape after a place is its noun
    return bool(at) and any(w in shapes.COLOURS or w in shapes.SHAPES and nouns and k > nouns[0]
                            for k, w in enumerate(seg) if k > at[0])


def _new_object(tokens: list[str]) -> bool:
    # "a [colour] shape <place>" with no "the" or "it": an object the instruction brings in
    content = [w for w in tokens if w not in ("make", "and", "to", "into", "them")]
    return len(content) == 4 and content[0] == "a" and content[1] in shapes.COLOURS and content[2] in shapes.SHAPES \
        and content[3] in PLACE_OF


def _clause(tokens: list[str], verb: str | None) -> str | None:
    # one edit's canonical instruction (shapes.instruction's words, the referent as the instruction named it)
    bare = [w for k, w in enumerate(tokens) if w in shapes.SHAPES and not (k and tokens[k - 1] == "the")]
    a_value = [w for k, w in enumerate(tokens) if w in shapes.SHAPES and k > 1 and tokens[k - 1] in shapes.COLOURS
               and tokens[k - 2] == "a"]  # "make it a red square": a new colour and shape
    if verb in (None, "make") and _new_object(tokens):
        verb = "add"  # "could we have a blue circle at the top as well": a new object, not a change of one
    tokens = [w for w in tokens if w not in ("a", "the", "to", "one", "two", "three")]
    if "background" in tokens or tokens and all(w in shapes.BACKGROUNDS or w in ("make", "into") for w in tokens):
        values = [w for w in tokens if w in shapes.BACKGROUNDS]
        if "remove" in tokens and len(values) <= 1 and all(w in ("remove", "background", *values) for w in tokens):
            return ""  # "take the grey away and go white": a background is replaced, never removed
        if len(values) == 2 and values[0] != values[1]:
            values = values[1:]  # "swap the grey background for a black one", "make the grey background white"
        rest = [w for w in tokens if w not in shapes.BACKGROUNDS and w not in ("background", "make", "it", "into",
                                                                              "thing")]
        return f"make the background {values[0]}" if len(values) == 1 and not rest else None
    if verb == "add":
        colours = [w for w in tokens if w in shapes.COLOURS]
        nouns = [w for w in tokens if w in shapes.SHAPES]
        places = [w for w in tokens if w in PLACE_OF]
        if len(colours) == len(nouns) == len(places) == 1:
            return f"add a {colours[0]} {nouns[0]} {places[0]}"
        return None
    if verb == "remove":
        ref = _referent([w for w in tokens if w != "remove"])
        return f"remove {ref}" if ref else None
    # a change: the value is the last colour or shape that does not stand before a noun; the rest names the object
    body = [w for w in tokens if w not in ("make", "into")]
    value_at = None
    for k in range(len(body) - 1, -1, -1):
        w = body[k]
        if w in shapes.COLOURS and not (k + 1 < len(body) and (body[k + 1] in shapes.SHAPES or body[k + 1] == "thing")):
            value_at = k
            break
        if w in shapes.SHAPES and sum(x in shapes.SHAPES or x == "thing" for x in body) > 1:
            value_at = k
            break
    if value_at is None and a_value and len(body) > 2 and body[-1] == a_value[-1] and body[-2] in shapes.COLOURS:
        value_at = len(body) - 1
    if value_at is None:
        nouns = [w for w in body if w in shapes.SHAPES]
        if len(nouns) == 1 and bare and not any(w in shapes.COLOURS or w in PLACE_OF or w == "thing" for w in body):
            value_at = body.index(nouns[0])  # "square instead of triangle" (the old one dropped): "it" is the object
        else:
            return None
    value, ref_words = body[value_at], body[:value_at] + body[value_at + 1:]
    nouns_before = [w for w in body[:value_at - 1] if w in shapes.SHAPES or w == "thing" or w in PLACE_OF]
    if value in shapes.SHAPES and value_at and body[value_at - 1] in shapes.COLOURS and (nouns_before or body[
            :value_at - 1] == ["it"]):
        ref = _referent(body[:value_at - 1])  # "make the triangle a yellow circle": a recolour and a reshape
        if ref and body[value_at - 1] in ref.split():  # "replace the green triangle with a green square"
            return f"turn {ref} into a {value}"
        return f"make {ref} {body[value_at - 1]}{CLAUSE}turn {ref} into a {value}" if ref else None
    if any(w in shapes.COLOURS or w in shapes.SHAPES for w in body[value_at + 1:]) and value in shapes.COLOURS:
        return None
    ref = _referent(ref_words) or ("it" if not any(w in shapes.COLOURS or w in shapes.SHAPES or w in PLACE_OF
                                                   for w in ref_words) else None)
    if ref is None:
        return None
    return f"make {ref} {value}" if value in shapes.COLOURS else f"turn {ref} into a {value}"


def _merged(segments: list[list[str]]) -> list[list[str]]:
    # "circle on the left, yellow" (from "circle on the left -> yellow"): an object, then its new value alone;
    # "in the top left, add a green circle": a place, then the add it is for
    out: list[list[str]] = []
    for seg in segments:
        content = [w for w in seg if w not in ("a", "the", "into", "to")]
        prev = out[-1] if out else None
        value_alone = len(content) == 1 and (content[0] in shapes.COLOURS or content[0] in shapes.SHAPES)
        if content == ["background"]:
            continue  # "could the white go grey? the background I mean": the clause names what the one before meant
        if prev is not None and [w for w in prev if w not in ("a", "the")] == ["it"]:
            out[-1] = prev + list(seg)  # "the bottom one, it, make a square": the "it" is the next clause's
        elif prev is not None and _apposition(prev, seg):
            nouns = [w for w in prev + seg if w in shapes.SHAPES]  # "the lower one, the circle, ...": one object
            out[-1] = ["the"] + [w for w in prev + seg if w in shapes.COLOURS or w in shapes.SHAPES or w in PLACE_OF] \
                + ([] if nouns else ["thing"])
        elif prev is not None and value_alone and not any(w in _VERBS for w in prev) and _referent(prev) \
                and not _trailing_value(prev):
            out[-1] = prev + content
        elif prev is not None and "add" in prev and not any(w in PLACE_OF for w in prev) and len(content) == 1 \
                and content[0] in PLACE_OF:
            out[-1] = prev + content  # "put a yellow triangle between them, in the middle"
        elif prev is not None and len(prev) == 2 and prev[0] == "add" and prev[1] in PLACE_OF and "a" in seg and not any(
                w in PLACE_OF or w in _VERBS for w in seg):
            out[-1] = prev[:1] + seg + prev[1:]  # "look what popped up in the top left: a blue triangle"
        elif prev is not None and all(w in PLACE_OF for w in prev) and len(prev) == 1 and "add" in seg \
                and not any(w in PLACE_OF for w in seg):
            out[-1] = seg + prev
        else:
            out.append(list(seg))
    return out


def _apposition(prev: list[str], seg: list[str]) -> bool:
    # two clauses that each name an object with "the" and nothing else, and do not disagree: the same object named twice
    # ("the lower one, the circle, should be red")
    def named(tokens):
        return "a" not in tokens and not any(w in _VERBS or w == "it" for w in tokens) and _referent(tokens) \
            is not None and not _trailing_value(tokens) and all(
                w in shapes.COLOURS or w in shapes.SHAPES or w in PLACE_OF or w in ("the", "thing") for w in tokens)
    if not (named(prev) and named(seg) and seg[:1] == ["the"]):
        return False
    both = prev + seg
    return _referent([w for w in both if w != "the"]) is not None and (
        "thing" in prev or "thing" in seg or not any(w in shapes.SHAPES for w in seg))


def in_model_words(clause: str) -> str:
    """Return a canonical instruction in the words the first pass gives the model ("turn the circle into a square" ->
    "make the circle a square", "make the background grey" -> "make background grey"): what it was trained to read."""
    if clause.startswith("turn ") and " into a " in clause:
        ref, _, shape = clause.removeprefix("turn ").rpartition(" into a ")
        return f"make {ref} a {shape}"
    return clause.replace("make the background ", "make background ")


def arrange_instruction(out: list[str]) -> list[str] | None:
    """Return an instruction's edits as canonical instructions, one per edit, or None where the words do not pin them down.   [nb 09]

    Clauses split at commas and "and"; a clause without a verb takes the one before's ("add a red
    circle at the top and a green one at the bottom"); a clause naming only an object lends it to the
    next clause's "it" ("the one at the top, could it be navy?"); a bare colour after a change is a
    second value for the same object ("make the circle blue and red": two edits of one thing, which
    the world refuses as a contradiction).
    """
    if any(w.startswith(ROW_COL) or w in RELATIONS for w in out):
        return None
    segments = _merged(_split(out))
    clauses, verb, held = [], None, None
    for k, seg in enumerate(segments):
        seg_verb = next((w for w in seg if w in _VERBS), None)
        content = [w for w in seg if w not in ("a", "the", "it", "to", "one")]
        if content == [verb] and seg_verb == verb and clauses:
            continue  # "the square - delete, delete, delete": the edit said again
        if seg_verb is None and not any(w in shapes.COLOURS or w in shapes.SHAPES or w in shapes.BACKGROUNDS
                                        or w == "background" for w in content) and not content:
            continue
        if seg_verb is None and clauses and verb == "make" and all(w in shapes.COLOURS for w in content) and content:
            ref = clauses[-1].split(" ", 1)[1].rsplit(" ", 1)[0]  # "make the circle blue and red"
            clauses.append(f"make {ref} {content[0]}")
            continue
        nxt = segments[k + 1] if k + 1 < len(segments) else []
        bare_change = "make" in nxt and "it" not in nxt and "the" not in nxt and len(
            [w for w in nxt if w in shapes.COLOURS or w in shapes.SHAPES]) == 1 and all(
            w in shapes.COLOURS or w in shapes.SHAPES or w in ("make", "a", "to") for w in nxt)  # "..., should be red"
        bare_remove = [w for w in nxt if w not in ("a", "the", "to")] == ["remove"]  # "yellow circle, you may leave"
        if seg_verb is None and ("it" in nxt or bare_change or bare_remove) and not any(w in shapes.BACKGROUNDS or w == "background" for w in seg) \
                and _referent(seg) and not _trailing_value(seg):
            held = [w for w in seg if w in shapes.COLOURS or w in shapes.SHAPES or w == "thing" or w in PLACE_OF]
            continue  # "the one at the top, could it be navy?": the object the next "it" means
        if held is not None and "it" in seg:
            at = seg.index("it")
            seg = seg[:at] + ["the"] + held + seg[at + 1:]
            held = None
        elif held is not None and ("make" in seg or seg_verb == "remove"):
            at = seg.index(seg_verb if seg_verb == "remove" else "make") + 1
            seg = seg[:at] + ["the"] + held + seg[at:]
            held = None
        if seg_verb is None and len(seg) > 2 and seg[0] in shapes.COLOURS and seg[1] == "the" and _referent(seg[2:]):
            seg, seg_verb = ["make", *seg[1:], seg[0]], "make"  # "Ladybird red for the circle, if you please"
        verb = seg_verb or ("make" if "background" in seg or any(w in shapes.BACKGROUNDS for w in seg) else verb)
        clause = _clause(seg, verb)
        if clause is None:
            return None
        if clause:
            clauses.append(clause)
    return _anaphora(clauses) if clauses and held is None else None


def _anaphora(clauses: list[str]) -> list[str]:
    # a later edit's "it" is the object the edit before named ("make the triangle red and turn it into a circle"); an
    # edit said twice is said once ("the triangle, could it be round instead? a circle?")
    out, named = [], None
    for clause in (c for joined in clauses for c in joined.split(CLAUSE)):
        verb, _, rest = clause.partition(" ")
        ref = rest.rsplit(" into a ", 1)[0] if verb == "turn" else rest.rsplit(" ", 1)[0] if verb == "make" else rest
        if ref in ("it", f"{EVERY} thing") and named is not None and verb in ("make", "turn", "remove"):
            clause = clause.replace(" " + ref, " " + named, 1)  # "take the circles and make them blue": those named
        elif verb in ("make", "turn", "remove") and ref.startswith(("the ", EVERY + " ")) and ref != "the background" \
                and ref != f"{EVERY} thing":
            named = ref
        if clause not in out:
            out.append(clause)
    return out
