"""Objects and scenes: the structure every image, caption and edit of the shapes world is made from.   [nb 04]"""

from __future__ import annotations

from dataclasses import dataclass, replace

from course_lib.shapes.world import BACKGROUNDS, COLOURS, GRID, HALF_SIZE_RANGE, JITTER, MAX_OBJECTS, POSITIONS, SHAPES, \
    cell_centre
from course_lib.validation import CourseInputError, check_choice, check_int, check_number

_TOL = 1e-6  # describe() rounds to 6 decimals; from_dict must accept what it wrote
_OBJECT_KEYS = ("shape", "colour", "row", "col")


@dataclass(frozen=True)
class ShapeObject:
    """One object: shape, colour, grid cell (row 0 = top, col 0 = left), half-size and offset (fractions of the side)."""

    shape: str
    colour: str
    row: int
    col: int
    half_size: float = 0.11
    dx: float = 0.0
    dy: float = 0.0

    def __post_init__(self):
        check_choice(self.shape, SHAPES, "shape")
        check_choice(self.colour, COLOURS, "colour")
        for name in ("row", "col"):
            value = check_int(getattr(self, name), name, minimum=0, maximum=GRID - 1,
                              hint=f"a cell of the {GRID} x {GRID} grid: row 0 is the top, col 0 the left")
            object.__setattr__(self, name, value)
        half = check_number(self.half_size, "half_size", hint="a fraction of the image side")
        if not HALF_SIZE_RANGE[0] - _TOL <= half <= HALF_SIZE_RANGE[1] + _TOL:
            raise CourseInputError(f"half_size must be in {HALF_SIZE_RANGE} (fraction of the image side), got {self.half_size}.")
        dx = check_number(self.dx, "dx", hint="an offset inside the cell, a fraction of the image side")
        dy = check_number(self.dy, "dy", hint="an offset inside the cell, a fraction of the image side")
        if abs(dx) > JITTER + _TOL or abs(dy) > JITTER + _TOL:
            raise CourseInputError(f"dx and dy must be within +-{JITTER} (fraction of the side), got {self.dx}, {self.dy}.")
        for name, value in (("half_size", half), ("dx", dx), ("dy", dy)):
            object.__setattr__(self, name, value)

    @property
    def cell(self) -> tuple[int, int]:
        return self.row, self.col

    @property
    def position(self) -> str:
        """The cell's short name: "top left", "top", ..., "middle", ..., "bottom right"."""
        return POSITIONS[self.cell]

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the object's centre as fractions of the image side (x right, y down)."""
        cx, cy = cell_centre(self.row, self.col)
        return cx + self.dx, cy + self.dy

    @property
    def noun(self) -> str:
        """Return "<colour> <shape>", e.g. "red circle"."""
        return f"{self.colour} {self.shape}"

    def describe(self) -> dict:
        """Return a JSON-ready dict: shape, colour, position, row, col, centre, half_size."""
        return {"shape": self.shape, "colour": self.colour, "position": self.position, "row": self.row,
                "col": self.col, "centre": [round(v, 6) for v in self.centre], "half_size": round(self.half_size, 6)}


@dataclass(frozen=True)
class Scene:
    """Objects (kept in reading order: by row, then column; one per cell) on a named background."""

    objects: tuple[ShapeObject, ...]
    background: str = "black"

    def __post_init__(self):
        if isinstance(self.objects, ShapeObject):
            raise CourseInputError("objects must be a tuple of ShapeObject, e.g. Scene((obj,), 'black') for one object.")
        try:
            objects = tuple(self.objects)
        except TypeError:
            raise CourseInputError(f"objects must be a tuple of ShapeObject, got {type(self.objects).__name__}.") from None
        if not all(isinstance(o, ShapeObject) for o in objects):
            raise CourseInputError("objects must be ShapeObject instances.")
        if len(objects) > MAX_OBJECTS:
            raise CourseInputError(f"a scene holds at most {MAX_OBJECTS} objects, got {len(objects)}.")
        cells = [o.cell for o in objects]
        if len(set(cells)) != len(cells):
            raise CourseInputError(f"two objects share a grid cell ({POSITIONS[max(cells, key=cells.count)]}); use one object per cell.")
        check_choice(self.background, BACKGROUNDS, "background")
        object.__setattr__(self, "objects", tuple(sorted(objects, key=lambda o: o.cell)))

    def describe(self) -> dict:
        """Return the structured description, JSON-ready: {"background": ..., "objects": [...]}."""
        return {"background": self.background, "objects": [o.describe() for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        """Rebuild a scene from describe()'s dict (centre and half_size optional: the cell's centre, 0.11)."""
        if not isinstance(d, dict) or "background" not in d or not isinstance(d.get("objects"), (list, tuple)):
            raise CourseInputError("Scene.from_dict takes a dict as Scene.describe() writes it: "
                                   "{'background': 'black', 'objects': [{'shape', 'colour', 'row', 'col', ...}, ...]}.")
        objects = []
        for o in d["objects"]:
            missing = [k for k in _OBJECT_KEYS if not isinstance(o, dict) or k not in o]
            if missing:
                raise CourseInputError(f"each object of Scene.from_dict needs the keys {_OBJECT_KEYS}; "
                                       f"{o!r} lacks {', '.join(missing)}.")
            obj = ShapeObject(o["shape"], o["colour"], o["row"], o["col"], o.get("half_size", 0.11))
            if "centre" in o:
                centre = o["centre"]
                if not isinstance(centre, (list, tuple)) or len(centre) != 2:
                    raise CourseInputError(f"an object's centre must be an (x, y) pair, got {centre!r}.")
                x, y = (check_number(v, "centre", hint="fractions of the image side") for v in centre)
                cx, cy = cell_centre(obj.row, obj.col)
                obj = replace(obj, dx=x - cx, dy=y - cy)
            objects.append(obj)
        return cls(tuple(objects), d["background"])

    def free_cells(self) -> list[tuple[int, int]]:
        """Return the grid cells no object occupies, in reading order."""
        used = {o.cell for o in self.objects}
        return [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in used]

    def pairs(self) -> list[tuple[str, str]]:
        """Return the (colour, shape) pair of each object."""
        return [(o.colour, o.shape) for o in self.objects]


def check_scene(scene, name: str = "scene") -> Scene:
    """Return `scene` if it is a Scene, else raise saying how to make one."""
    if not isinstance(scene, Scene):
        raise CourseInputError(f"{name} must be a shapes.Scene (e.g. from shapes.sample_scenes or shapes.scene_from_caption), "
                               f"got {type(scene).__name__}.")
    return scene


def check_scenes(scenes, name: str = "scenes") -> list[Scene]:
    """Return `scenes` as a list if it is a list (or any iterable) of Scene objects, else raise."""
    try:
        out = None if isinstance(scenes, (str, Scene)) else list(scenes)
    except TypeError:
        out = None
    if out is None or not all(isinstance(s, Scene) for s in out):
        raise CourseInputError(f"{name} must be a list of shapes.Scene (e.g. from shapes.sample_scenes), "
                               f"got {type(scenes).__name__}.")
    return out
