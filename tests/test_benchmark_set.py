"""The writer's hand-written held-out benchmark (course_lib.language.benchmark_set): every line has one answer.

Oracles: shapes.parse_caption and shapes.caption (every expected caption is a caption of the world,
in the canonical reading order), shapes.read_instruction + apply_edit (every canonical instruction
executes on its source scene and gives exactly the expected target caption), and the scene itself
(an instruction refused as not_in_scene names a thing the scene lacks; one refused as ambiguous a
thing two of its objects fit).
"""

from __future__ import annotations

import collections
import re

import pytest

from course_lib import language, shapes
from course_lib.language import benchmark_set as bench
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

RELATION = re.compile(r"^a (\w+) (\w+) (above|to the left of) a (\w+) (\w+)$")
# Minimum number of lines per tag, as the benchmark promises them (data/writer_benchmark/README.md).
REQUEST_MINIMUMS = {"two_objects": 40, "three_objects": 20, "relation": 20, "background": 30, "impossible": 30,
                    "lexicon": 30, "filler": 20, "new_order": 20, "typo": 5, "numeral": 5, "count": 10, "vague": 5}
INSTRUCTION_MINIMUMS = {"impossible": 30, "two_edits": 10, "lexicon": 20, "typo": 5, "colour": 30, "shape": 20,
                        "background": 20, "remove": 20, "add": 20, "referent_position": 15, "referent_colour": 15,
                        "referent_shape": 15}
# The thing each not_in_scene / ambiguous line names, read off its instruction by hand, per part.
DEV_REFERENTS = {
    "i015": {"shape": "triangle"}, "i037": {"colour": "green", "shape": "square"}, "i046": {"shape": "square"},
    "i051": {"shape": "triangle"}, "i052": {"shape": "triangle"}, "i057": {"colour": "yellow"},
    "i073": {"colour": "blue", "shape": "circle"}, "i079": {"shape": "circle"},
    "i084": {"colour": "blue", "shape": "square"}, "i088": {"colour": "red", "shape": "triangle"},
    "i118": {"colour": "red"}, "i125": {"shape": "circle"}, "i128": {"colour": "yellow", "shape": "circle"},
    "i140": {"colour": "green", "shape": "triangle"}, "i145": {"shape": "circle"}, "i150": {"shape": "square"},
    "i170": {"shape": "triangle"}, "i184": {"colour": "green", "shape": "circle"}, "i208": {"shape": "square"},
    "i215": {"shape": "circle"}, "i219": {"shape": "circle"}, "i233": {"shape": "triangle"}, "i235": {"colour": "red"},
    "i237": {"shape": "triangle"}, "i243": {"colour": "blue"},
}
FINAL_REFERENTS = {
    "f-i029": {"shape": "triangle"}, "f-i057": {"shape": "circle"}, "f-i087": {"shape": "triangle"},
    "f-i097": {"colour": "red"}, "f-i104": {"colour": "blue"}, "f-i112": {"colour": "red"},
    "f-i120": {"shape": "circle"}, "f-i121": {"shape": "square"}, "f-i137": {"shape": "circle"},
    "f-i152": {"shape": "square"}, "f-i161": {"shape": "circle"}, "f-i169": {"shape": "triangle"},
    "f-i170": {"colour": "green", "shape": "triangle"}, "f-i187": {"colour": "yellow"}, "f-i194": {"shape": "square"},
    "f-i202": {"shape": "circle"}, "f-i218": {"shape": "square"}, "f-i219": {"shape": "triangle"},
    "f-i226": {"colour": "yellow"}, "f-i234": {"colour": "yellow"}, "f-i243": {"shape": "square"},
    "f-i251": {"colour": "green"}, "f-i252": {"colour": "red"},
}
FINAL2_REFERENTS = {
    "g-i034": {"colour": "red", "shape": "circle"}, "g-i049": {"colour": "yellow", "shape": "triangle"},
    "g-i067": {"shape": "triangle"}, "g-i083": {"colour": "blue", "shape": "square"}, "g-i090": {"shape": "circle"},
    "g-i099": {"colour": "blue", "shape": "square"}, "g-i109": {"shape": "circle"}, "g-i118": {"shape": "circle"},
    "g-i125": {"colour": "red"}, "g-i134": {"shape": "triangle"}, "g-i141": {"shape": "triangle"},
    "g-i142": {"colour": "green"}, "g-i150": {"shape": "circle"}, "g-i166": {"colour": "yellow", "shape": "square"},
    "g-i184": {"colour": "yellow"}, "g-i191": {"colour": "yellow"}, "g-i199": {"colour": "blue", "shape": "square"},
    "g-i200": {"shape": "square"}, "g-i217": {"colour": "red"}, "g-i218": {"shape": "circle"},
    "g-i221": {"shape": "triangle"}, "g-i235": {"shape": "circle"}, "g-i237": {"colour": "red", "shape": "square"},
    "g-i243": {"shape": "triangle"}, "g-i252": {"colour": "yellow", "shape": "circle"},
}
FINAL3_REFERENTS = {
    "h-i040": {"shape": "triangle"}, "h-i073": {"shape": "circle"}, "h-i090": {"shape": "triangle"},
    "h-i107": {"shape": "square"}, "h-i115": {"colour": "yellow"}, "h-i116": {"shape": "triangle"},
    "h-i123": {"shape": "circle"}, "h-i129": {"colour": "blue", "shape": "circle"}, "h-i139": {"shape": "circle"},
    "h-i150": {"colour": "green", "shape": "square"}, "h-i155": {"colour": "red"},
    "h-i167": {"colour": "yellow", "shape": "circle"}, "h-i174": {"shape": "circle"},
    "h-i190": {"colour": "yellow", "shape": "circle"}, "h-i198": {"shape": "square"},
    "h-i207": {"shape": "triangle"}, "h-i216": {"colour": "red", "shape": "circle"},
    "h-i224": {"colour": "red", "shape": "square"}, "h-i238": {"shape": "triangle"},
    "h-i246": {"colour": "green", "shape": "circle"}, "h-i248": {"shape": "triangle"},
}
FINAL4_REFERENTS = {
    "j-i043": {"colour": "red", "shape": "triangle"}, "j-i059": {"colour": "blue", "shape": "square"},
    "j-i084": {"shape": "triangle"}, "j-i092": {"colour": "green", "shape": "circle"}, "j-i096": {"shape": "triangle"},
    "j-i110": {"colour": "blue", "shape": "circle"}, "j-i114": {"colour": "blue", "shape": "circle"},
    "j-i127": {"colour": "yellow", "shape": "square"}, "j-i140": {"colour": "red", "shape": "circle"},
    "j-i141": {"shape": "triangle"}, "j-i151": {"shape": "square"}, "j-i166": {"colour": "green", "shape": "circle"},
    "j-i188": {"colour": "yellow", "shape": "circle"}, "j-i192": {"colour": "yellow"}, "j-i201": {"shape": "circle"},
    "j-i215": {"shape": "triangle"}, "j-i221": {"colour": "green", "shape": "triangle"}, "j-i223": {"colour": "red"},
    "j-i230": {"colour": "blue"}, "j-i239": {"colour": "green"}, "j-i244": {"colour": "blue", "shape": "square"},
    "j-i248": {"shape": "triangle"},
}
FINAL5_REFERENTS = {
    "k-i031": {"shape": "circle"}, "k-i062": {"colour": "blue", "shape": "triangle"}, "k-i078": {"shape": "square"},
    "k-i086": {"shape": "triangle"}, "k-i093": {"colour": "green"}, "k-i099": {"shape": "square"},
    "k-i112": {"colour": "red", "shape": "circle"}, "k-i123": {"shape": "circle"}, "k-i132": {"shape": "triangle"},
    "k-i146": {"colour": "blue"}, "k-i154": {"shape": "triangle"}, "k-i180": {"colour": "yellow", "shape": "circle"},
    "k-i183": {"colour": "yellow"}, "k-i184": {"shape": "square"}, "k-i192": {"shape": "circle"},
    "k-i193": {"colour": "green"}, "k-i206": {"colour": "blue", "shape": "square"},
    "k-i210": {"colour": "red", "shape": "triangle"}, "k-i211": {"shape": "triangle"}, "k-i227": {"shape": "square"},
    "k-i244": {"shape": "circle"}, "k-i252": {"colour": "yellow"},
}
FINAL6_REFERENTS = {
    "m-i016": {"shape": "triangle"}, "m-i035": {"shape": "square"}, "m-i043": {"shape": "circle"},
    "m-i052": {"colour": "blue", "shape": "circle"}, "m-i062": {"colour": "red"},
    "m-i071": {"colour": "yellow", "shape": "square"}, "m-i080": {"shape": "square"}, "m-i087": {"shape": "triangle"},
    "m-i095": {"shape": "square"}, "m-i097": {"shape": "square"}, "m-i112": {"colour": "blue"},
    "m-i114": {"colour": "blue", "shape": "square"}, "m-i121": {"colour": "blue"}, "m-i126": {"shape": "circle"},
    "m-i138": {"colour": "yellow", "shape": "circle"}, "m-i139": {"shape": "triangle"}, "m-i148": {"shape": "circle"},
    "m-i187": {"colour": "yellow"}, "m-i197": {"shape": "circle"}, "m-i204": {"shape": "triangle"},
    "m-i205": {"colour": "green"}, "m-i213": {"shape": "circle"}, "m-i236": {"shape": "square"},
    "m-i241": {"shape": "square"}, "m-i243": {"shape": "triangle"},
}
FINAL7_REFERENTS = {
    "n-i025": {"shape": "circle"}, "n-i042": {"shape": "square"}, "n-i061": {"shape": "triangle"},
    "n-i078": {"shape": "circle"}, "n-i097": {"shape": "triangle"}, "n-i099": {"colour": "blue"},
    "n-i108": {"shape": "circle"}, "n-i123": {"shape": "circle"}, "n-i132": {"colour": "green", "shape": "square"},
    "n-i135": {"colour": "green"}, "n-i150": {"shape": "triangle"}, "n-i153": {"colour": "red", "shape": "circle"},
    "n-i159": {"shape": "circle"}, "n-i169": {"colour": "red", "shape": "square"},
    "n-i178": {"colour": "yellow", "shape": "triangle"}, "n-i180": {"shape": "triangle"},
    "n-i195": {"colour": "green", "shape": "triangle"}, "n-i198": {"shape": "circle"}, "n-i199": {"colour": "green"},
    "n-i206": {"shape": "triangle"}, "n-i207": {"colour": "red"}, "n-i214": {"colour": "yellow"},
    "n-i220": {"colour": "blue", "shape": "circle"}, "n-i223": {"shape": "square"},
    "n-i237": {"colour": "yellow", "shape": "square"}, "n-i240": {"shape": "circle"}, "n-i241": {"colour": "blue"},
    "n-i249": {"shape": "triangle"}, "n-i250": {"colour": "yellow"},
    "n-i262": {"colour": "yellow", "shape": "triangle"},
}
FINAL8_REFERENTS = {
    "o-i016": {"shape": "square"}, "o-i027": {"shape": "circle"}, "o-i044": {"colour": "blue"},
    "o-i062": {"colour": "blue", "shape": "circle"}, "o-i082": {"colour": "yellow"}, "o-i099": {"shape": "triangle"},
    "o-i107": {"shape": "triangle"}, "o-i108": {"shape": "triangle"}, "o-i110": {"colour": "red", "shape": "triangle"},
    "o-i116": {"colour": "blue"}, "o-i126": {"shape": "triangle"}, "o-i136": {"colour": "blue", "shape": "circle"},
    "o-i144": {"shape": "circle"}, "o-i145": {"colour": "green", "shape": "circle"},
    "o-i163": {"colour": "green", "shape": "square"}, "o-i172": {"colour": "red"}, "o-i173": {"colour": "red"},
    "o-i181": {"colour": "red"}, "o-i200": {"colour": "yellow", "shape": "square"}, "o-i207": {"shape": "square"},
    "o-i208": {"colour": "yellow", "shape": "square"}, "o-i216": {"shape": "circle"}, "o-i217": {"shape": "circle"},
    "o-i235": {"colour": "red"}, "o-i237": {"colour": "blue", "shape": "triangle"}, "o-i244": {"shape": "triangle"},
    "o-i253": {"shape": "square"}, "o-i255": {"shape": "triangle"}, "o-i262": {"shape": "triangle"},
}
REFERENTS = {"dev": DEV_REFERENTS, "final": FINAL_REFERENTS, "final2": FINAL2_REFERENTS, "final3": FINAL3_REFERENTS,
             "final4": FINAL4_REFERENTS, "final5": FINAL5_REFERENTS, "final6": FINAL6_REFERENTS,
             "final7": FINAL7_REFERENTS, "final8": FINAL8_REFERENTS}
ID_PREFIX = {"dev": "", "final": "f-", "final2": "g-", "final3": "h-", "final4": "j-", "final5": "k-", "final6": "m-",
             "final7": "n-", "final8": "o-"}
FINAL_HEADING = "\n## The final set"  # README.md: the dev set's section comes before it, the final set's after
FINAL2_HEADING = "\n## The second final set (final2)"  # README.md: the final2 set's section, after the final set's
FINAL3_HEADING = "\n## The third final set (final3)"  # README.md: the final3 set's section, after the final2 set's
FINAL4_HEADING = "\n## The fourth final set (final4)"  # README.md: the final4 set's section, after the final3 set's
FINAL5_HEADING = "\n## The fifth final set (final5)"  # README.md: the final5 set's section, after the final4 set's
FINAL6_HEADING = "\n## The sixth final set (final6)"  # README.md: the final6 set's section, after the final5 set's
FINAL7_HEADING = "\n## The seventh final set (final7)"  # README.md: the final7 set's section, after the final6 set's
FINAL8_HEADING = "\n## The eighth final set (final8)"  # README.md: the final8 set's section, after the final7 set's
OBJECT_COUNT_TAGS = {"single": 1, "two_objects": 2, "three_objects": 3}


def _canonical_relation(expected: str) -> str:
    c1, s1, relation, c2, s2 = RELATION.match(expected).groups()
    cells = ((0, 1), (1, 1)) if relation == "above" else ((1, 0), (1, 1))
    scene = shapes.Scene((shapes.ShapeObject(s1, c1, *cells[0]), shapes.ShapeObject(s2, c2, *cells[1])))
    return shapes.caption(scene, "relation")


def _target(source_caption: str, canonical: str) -> str:
    """Apply canonical instruction(s), each read against the source scene; recolour/reshape before add/remove."""
    scene = shapes.scene_from_caption(source_caption)
    edits = [shapes.read_instruction(scene, part) for part in canonical.split(" ; ")]
    for edit in [e for e in edits if e.kind not in ("add", "remove")] + [e for e in edits if e.kind in ("add", "remove")]:
        scene = shapes.apply_edit(scene, edit)
    return shapes.caption(scene, "full")


@pytest.mark.parametrize("part", bench.PARTS)
def test_sizes_and_tag_minimums(part):
    requests, instructions = bench.heldout_requests(part), bench.heldout_instructions(part)
    assert len(requests) >= 220 and len(instructions) >= 220
    for items, minimums in ((requests, REQUEST_MINIMUMS), (instructions, INSTRUCTION_MINIMUMS)):
        counts = bench.tag_counts(items)
        short = {t: (counts.get(t, 0), m) for t, m in minimums.items() if counts.get(t, 0) < m}
        assert not short, short
    assert len({i.source_caption for i in instructions}) >= 30
    kinds = collections.Counter(bench.refusal_kind(i.expected) for i in instructions if bench.is_refusal(i.expected))
    assert set(kinds) == set(bench.REFUSAL_KINDS), kinds  # every kind of refusal is measured
    kinds = collections.Counter(bench.refusal_kind(r.expected) for r in requests if bench.is_refusal(r.expected))
    assert set(kinds) == {"colour", "shape", "count"}, kinds


@pytest.mark.parametrize("part", bench.PARTS)
def test_ids_tags_and_refusals_are_well_formed(part):
    requests, instructions = bench.heldout_requests(part), bench.heldout_instructions(part)
    for items, prefix, known in ((requests, "r", bench.REQUEST_TAGS), (instructions, "i", bench.INSTRUCTION_TAGS)):
        ids = [x.id for x in items]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(ID_PREFIX[part] + prefix + r"\d{3}", i) for i in ids)
        for x in items:
            assert x.tags and set(x.tags) <= set(known), (x.id, x.tags)
            assert len(set(x.tags)) == len(x.tags), x.id
            assert ("impossible" in x.tags) == bench.is_refusal(x.expected), x.id
            if bench.is_refusal(x.expected):
                assert bench.refusal_kind(x.expected) in bench.REFUSAL_KINDS, x.id
            assert x.expected == x.expected.strip() and "\t" not in x.expected
    for i in instructions:
        assert (i.canonical == "") == bench.is_refusal(i.expected), i.id
        assert ("two_edits" in i.tags) == (" ; " in i.canonical), i.id
    assert set(bench.TAGS) == set(bench.REQUEST_TAGS) | set(bench.INSTRUCTION_TAGS)


@pytest.mark.parametrize("part", bench.PARTS)
def test_no_line_is_duplicated(part):
    seen = collections.Counter(" ".join(r.request.lower().split()) for r in bench.heldout_requests(part))
    assert [t for t, n in seen.items() if n > 1] == []
    pairs = collections.Counter((i.source_caption, " ".join(i.instruction.lower().split()))
                                for i in bench.heldout_instructions(part))
    assert [p for p, n in pairs.items() if n > 1] == []


@pytest.mark.parametrize("part", bench.PARTS)
def test_request_answers_are_canonical_captions(part):
    relations = 0
    for r in bench.heldout_requests(part):
        if bench.is_refusal(r.expected):
            continue
        if "relation" in r.tags:
            relations += 1
            assert RELATION.match(r.expected), r.id
            assert _canonical_relation(r.expected) == r.expected, r.id  # "above"/"to the left of", never below/right
            continue
        parsed = shapes.parse_caption(r.expected)
        scene = shapes.scene_from_caption(r.expected)
        named = parsed["background"] is not None
        assert shapes.caption(scene, "full" if named else "objects") == r.expected, r.id  # reading order
        assert named == ("background" in r.tags), r.id  # the background appears only when the request names one
        counts = [n for t, n in OBJECT_COUNT_TAGS.items() if t in r.tags]
        assert counts == [len(scene.objects)], (r.id, r.tags)
    assert relations >= 20


@pytest.mark.parametrize("part", bench.PARTS)
def test_instruction_answers_are_the_world_executing_the_canonical_instruction(part):
    for i in bench.heldout_instructions(part):
        scene = shapes.scene_from_caption(i.source_caption)
        assert shapes.caption(scene, "full") == i.source_caption, i.id
        if bench.is_refusal(i.expected):
            continue
        assert _target(i.source_caption, i.canonical) == i.expected, i.id
        assert language.resolve_edit(i.canonical, i.source_caption, i.instruction) == i.expected, i.id
        for part in i.canonical.split(" ; "):  # each part is exactly the world's own wording of its edit
            assert shapes.instruction(scene, shapes.read_instruction(scene, part)) == part, i.id
        assert i.expected != i.source_caption, i.id


@pytest.mark.parametrize("part", bench.PARTS)
def test_not_in_scene_and_ambiguous_referents_hold(part):
    by_id = {i.id: i for i in bench.heldout_instructions(part)}
    needing = {i.id for i in by_id.values() if bench.refusal_kind(i.expected) in ("not_in_scene", "ambiguous")}
    assert needing == set(REFERENTS[part])
    for ident, referent in REFERENTS[part].items():
        item = by_id[ident]
        assert all(value in item.instruction for value in referent.values()), ident  # the words the line uses
        scene = shapes.scene_from_caption(item.source_caption)
        fits = [o for o in scene.objects if all(getattr(o, key) == value for key, value in referent.items())]
        if bench.refusal_kind(item.expected) == "not_in_scene":
            assert fits == [], ident
        else:
            assert len(fits) >= 2, ident


@pytest.mark.parametrize("part", bench.PARTS)
def test_count_and_no_change_refusals_hold(part):
    for i in bench.heldout_instructions(part):
        scene = shapes.scene_from_caption(i.source_caption)
        if bench.refusal_kind(i.expected) == "count":
            assert "add" in i.tags or "more" in i.instruction, i.id
            assert len(scene.objects) == shapes.MAX_OBJECTS or "more" in i.instruction, i.id
        if bench.refusal_kind(i.expected) == "no_change" and "background" in i.tags:
            assert scene.background in i.instruction, i.id


def test_refusal_helpers_and_loading_errors(tmp_path, monkeypatch):
    assert bench.is_refusal("refuse:colour") and bench.refusal_kind("refuse:colour") == "colour"
    assert not bench.is_refusal("a red circle in the middle") and bench.refusal_kind("a red circle in the middle") is None
    with pytest.raises(CourseInputError, match="expected"):
        bench.is_refusal(None)
    monkeypatch.setattr(bench, "BENCHMARK_DIR", tmp_path)
    bench.heldout_requests.cache_clear()
    try:
        with pytest.raises(CourseInputError, match="missing"):
            bench.heldout_requests("dev")
        (tmp_path / "requests.tsv").write_text("id\trequest\n")
        with pytest.raises(CourseInputError, match="columns"):
            bench.heldout_requests("dev")
        (tmp_path / "requests.tsv").write_text("id\ttags\trequest\texpected\nr001\tsingle\ta red ball\n")
        with pytest.raises(CourseInputError, match="line 2"):
            bench.heldout_requests()
        with pytest.raises(CourseInputError, match="part"):
            bench.heldout_requests("test")
        with pytest.raises(CourseInputError, match="part"):
            bench.heldout_instructions("train")
    finally:
        bench.heldout_requests.cache_clear()


@pytest.mark.parametrize("part", bench.PARTS)
def test_readme_counts_match_the_tables(part):
    text = (bench.BENCHMARK_DIR / "README.md").read_text()
    dev_text, final_text = text.split(FINAL_HEADING)
    final_text, final2_text = final_text.split(FINAL2_HEADING)
    final2_text, final3_text = final2_text.split(FINAL3_HEADING)
    final3_text, final4_text = final3_text.split(FINAL4_HEADING)
    final4_text, final5_text = final4_text.split(FINAL5_HEADING)
    final5_text, final6_text = final5_text.split(FINAL6_HEADING)
    final6_text, final7_text = final6_text.split(FINAL7_HEADING)
    final7_text, final8_text = final7_text.split(FINAL8_HEADING)
    part_text = {"dev": dev_text, "final": final_text, "final2": final2_text, "final3": final3_text,
                 "final4": final4_text, "final5": final5_text, "final6": final6_text, "final7": final7_text,
                 "final8": final8_text}[part]
    requests_part, instructions_part = part_text.split("\nRequests (")[1].split("\nInstructions (")
    for section, items in ((requests_part, bench.heldout_requests(part)),
                           (instructions_part, bench.heldout_instructions(part))):
        assert section.startswith(f"{len(items)} lines"), section[:40]
        table = dict(re.findall(r"^\| (\w+) \| (\d+) \|", section, flags=re.M))
        assert {t: int(n) for t, n in table.items()} == bench.tag_counts(items)


@pytest.mark.parametrize("part", bench.PARTS[1:])
def test_each_final_set_repeats_no_line_of_the_sets_before_it(part):
    """Each final set is independent of the sets written before it: no request, and no (scene, instruction) pair,
    repeats a line of theirs (compared in code; the test names only the newer set's ids)."""
    def norm(text):
        return " ".join(text.lower().split())
    old_parts = bench.PARTS[:bench.PARTS.index(part)]
    old_requests = {norm(r.request) for p in old_parts for r in bench.heldout_requests(p)}
    old_pairs = {(i.source_caption, norm(i.instruction)) for p in old_parts for i in bench.heldout_instructions(p)}
    repeated = [r.id for r in bench.heldout_requests(part) if norm(r.request) in old_requests]
    repeated += [i.id for i in bench.heldout_instructions(part) if (i.source_caption, norm(i.instruction)) in old_pairs]
    assert repeated == []  # ids of this set's lines only: the older sets' lines are never printed