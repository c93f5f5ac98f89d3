"""Shapes3D: a procedural 3dshapes (Burgess & Kim 2018, https://github.com/deepmind/3d-shapes).

Same factor grid and index order as `3dshapes.h5`, drawn by our own ray caster; not the original pixels.

Grid (source: the 3dshapes README and the label values stored in `3dshapes.h5`):
- floor_hue, wall_hue, object_hue: 10 hues each, 0.0, 0.1, ..., 0.9 (= linspace(0, 1, 10, endpoint=False); the
  README says "linearly spaced in [0, 1]", the file's labels stop at 0.9 because hue 1 is hue 0 again);
- scale: 8 values, linspace(0.75, 1.25, 8);
- shape: 4 classes, 0 cube, 1 cylinder, 2 sphere, 3 capsule (the README gives only the classes 0-3; this order is
  the one docs/design.md lists under "Datasets");
- orientation: 15 values, linspace(-30, 30, 15) degrees.
480,000 RGB images of 64x64; flat index in C order over (floor_hue, wall_hue, object_hue, scale, shape,
orientation), orientation fastest, as the images are stored in the file.

The scene (world units, y up). A floor y = 0 and two walls standing on it, planes at +-45 degrees that meet in a
vertical corner 2.6 behind the origin. The object rests on the floor at the origin, its size proportional to
scale (a = scale / 2): a cube of side 2a; an upright cylinder of radius a and height 2a; a sphere of radius a; a
capsule lying along the x axis, radius 0.6a, 2.6a long. A pinhole camera (40 degree field of view) stands 5.0
from the vertical axis through the object, 2.2 above the floor, looking at the point 0.55 above the origin, and
turns about that axis by the orientation angle: the object and the room stay put while the view swings, so the
corner moves across the wall and the light falls on the object from another side. One point light at
(-2.5, 6, 4) is fixed in the world. A surface point's value (HSV brightness) is 0.35 + 0.65 max(0, n.l) (ambient
plus Lambert, n the normal, l the unit vector to the light), and 0.35 where the object blocks the light (a hard
shadow on floor and walls; the convex object shades itself through n.l). Colour = HSV(hue, saturation 1, value),
which is value * HSV(hue, 1, 1): linear in the value, so shading and colour separate.

Rendering = colouring precomputed masks. Each pixel is the mean of 3 x 3 rays (antialiasing). The tables, built
once per process in float64 and stored as float32:
- per orientation, the floor's and the wall's value-weighted coverage of each pixel (15 backgrounds);
- per (shape, scale, orientation), in the band of rows 18..46 that holds every object and shadow, the
  value-weighted coverage of floor, wall and object, with occlusion and shadow applied (480 x 3 x 29 x 64).
Rows above the band are wall only and rows below floor only for every orientation (checked when the tables are
built, as is that no object or shadow reaches the rows and columns just outside the region it is computed in).
An image is then colours [3 channels x 3 surfaces] @ masks [3 surfaces x pixels] in the band and a lookup of the
background coloured by one hue above and below it: no per-image Python loop.

Determinism: the same factors give bit-identical images on one machine. The tables come from float64 geometry
rounded to float32, and the band is a float32 matrix product, so machines with other BLAS kernels or libm agree to
about 1e-6; a pixel can differ by one ray's share (1/9 of its contrast) only where a ray lies within rounding
error of an edge. Values are in [0, 1].
"""

import functools

import numpy as np

from mtc_core.data.base import GroundTruthDataset

IMAGE_SIZE = 64
SUPERSAMPLE = 3  # rays per pixel side

HUES = np.linspace(0.0, 1.0, 10, endpoint=False)
SCALES = np.linspace(0.75, 1.25, 8)
SHAPES = ("cube", "cylinder", "sphere", "capsule")
ORIENTATIONS = np.linspace(-30.0, 30.0, 15)  # degrees

CAMERA_DISTANCE, CAMERA_HEIGHT, LOOK_AT_HEIGHT, FIELD_OF_VIEW = 5.0, 2.2, 0.55, 40.0
CORNER_DISTANCE = 2.6  # the walls' corner lies this far behind the object
LIGHT = np.array([-2.5, 6.0, 4.0])
AMBIENT = 0.35
SATURATION = 1.0
CAPSULE_RADIUS, CAPSULE_HALF_LENGTH = 0.6, 0.7  # of the half-size a; total length 2 (0.7 + 0.6) a = 2.6 a
BAND = (18, 47)  # rows [18, 47) hold every object and shadow
COLUMNS = (16, 60)  # columns [16, 60) hold every object and shadow
# Float32 rounding of three weights and their sum could lift a pixel whose float64 value is 1 a few ulp above 1;
# shrinking the tables by 2^-20 (1e-6) keeps every image in [0, 1] without a clipping pass.
SHRINK = 1.0 - 2.0**-20
EPS = 1e-9


def hsv_colours(hues: np.ndarray, saturation: float = SATURATION) -> np.ndarray:
    """RGB of HSV(hue, saturation, value 1) for hues in [0, 1): `[len(hues), 3]`; RGB at value v is v times this."""
    k = np.array([5.0, 3.0, 1.0])  # the standard closed form: channel = v - v s clip(min(f, 4 - f), 0, 1)
    f = (k + 6.0 * np.asarray(hues, dtype=np.float64)[:, None]) % 6.0
    return 1.0 - saturation * np.clip(np.minimum(f, 4.0 - f), 0.0, 1.0)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)  # much faster than sum(axis=-1) over a length-3 axis


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.sqrt(_dot(v, v))[..., None]


def camera_rays(orientations_deg: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rays through pixels rows x cols, S x S per pixel, for each orientation: origins `[O, 1, 1, 3]` and unit
    directions `[O, rows * S, cols * S, 3]`."""
    angle = np.deg2rad(np.asarray(orientations_deg, dtype=np.float64))
    origin = np.stack([CAMERA_DISTANCE * np.sin(angle), np.full_like(angle, CAMERA_HEIGHT), CAMERA_DISTANCE * np.cos(angle)], -1)
    forward = _unit(np.array([0.0, LOOK_AT_HEIGHT, 0.0]) - origin)
    right = _unit(np.cross(forward, [0.0, 1.0, 0.0]))
    up = np.cross(right, forward)
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE

    def screen(first, last):  # pixel-sample centres in [-1, 1] across the image
        return (((np.arange(first, last)[:, None] + sub).reshape(-1)) / IMAGE_SIZE) * 2.0 - 1.0

    x, y = screen(*cols), -screen(*rows)
    tan = np.tan(np.deg2rad(FIELD_OF_VIEW) / 2)
    directions = (forward[:, None, None] + tan * (x[None, None, :, None] * right[:, None, None]
                                                  + y[None, :, None, None] * up[:, None, None]))
    return origin[:, None, None], _unit(directions)


# ---- ray-object intersections: rays o [..., 3] + t d [..., 3]; each returns t of the first hit, inf on a miss


def _slab(o, d, axis, low, high):
    """Entry and exit t of the slab low <= x_axis <= high."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (low - o[..., axis]) / d[..., axis], (high - o[..., axis]) / d[..., axis]
    return np.minimum(t1, t2), np.maximum(t1, t2)


def _tube(o, d, axes, centre, radius):
    """Entry and exit t of the infinite cylinder (x_a - c_a)^2 + (x_b - c_b)^2 <= r^2."""
    (a, b), (ca, cb) = axes, centre
    oa, ob = o[..., a] - ca, o[..., b] - cb
    qa = d[..., a] ** 2 + d[..., b] ** 2
    qb = oa * d[..., a] + ob * d[..., b]
    disc = qb**2 - qa * (oa**2 + ob**2 - radius**2)
    ok = (disc > 0) & (qa > 0)
    root, safe = np.sqrt(np.where(ok, disc, 0.0)), np.where(ok, qa, 1.0)
    return np.where(ok, (-qb - root) / safe, np.inf), np.where(ok, (-qb + root) / safe, -np.inf)


def _convex(*pieces):
    """First hit on the intersection of convex pieces, each given by its entry and exit t."""
    t_in = functools.reduce(np.maximum, [piece[0] for piece in pieces])
    t_out = functools.reduce(np.minimum, [piece[1] for piece in pieces])
    return np.where((t_in < t_out) & (t_in > EPS), t_in, np.inf)


def _ball(o, d, centre, radius):
    oc = o - centre
    b = _dot(oc, d)
    disc = b**2 - (_dot(oc, oc) - radius**2)
    t = -b - np.sqrt(np.where(disc > 0, disc, 0.0))
    return np.where((disc > 0) & (t > EPS), t, np.inf)


def intersect_object(shape: int, scale: float, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """t [...] of the first hit (t > 0) of rays o + t d on the object resting on the floor at the origin; inf on a miss."""
    a = scale / 2
    if SHAPES[shape] == "cube":
        return _convex(_slab(o, d, 0, -a, a), _slab(o, d, 1, 0.0, 2 * a), _slab(o, d, 2, -a, a))
    if SHAPES[shape] == "cylinder":
        return _convex(_tube(o, d, (0, 2), (0.0, 0.0), a), _slab(o, d, 1, 0.0, 2 * a))
    if SHAPES[shape] == "sphere":
        return _ball(o, d, np.array([0.0, a, 0.0]), a)
    radius, half = CAPSULE_RADIUS * a, CAPSULE_HALF_LENGTH * a
    body = _convex(_tube(o, d, (1, 2), (radius, 0.0), radius), _slab(o, d, 0, -half, half))
    return np.minimum(body, np.minimum(_ball(o, d, np.array([-half, radius, 0.0]), radius),
                                       _ball(o, d, np.array([half, radius, 0.0]), radius)))


def object_normal(shape: int, scale: float, p: np.ndarray) -> np.ndarray:
    """Outward unit normal [..., 3] at points p [..., 3] on the object's surface."""
    a = scale / 2
    q = (p - np.array([0.0, a, 0.0])) / a  # the object's frame: cube, cylinder and sphere span [-1, 1] in y
    if SHAPES[shape] == "cube":
        axis = np.argmax(np.abs(q), axis=-1)[..., None]
        return np.where(np.arange(3) == axis, np.sign(q), 0.0)
    if SHAPES[shape] == "cylinder":  # on the side where the radial distance is the larger of the two
        radial = np.sqrt(q[..., 0] ** 2 + q[..., 2] ** 2)
        side = (radial >= np.abs(q[..., 1]))[..., None]
        safe = np.where(radial > 0, radial, 1.0)[..., None]
        return np.where(side, q * np.array([1.0, 0.0, 1.0]) / safe, np.array([0.0, 1.0, 0.0]) * np.sign(q[..., 1:2]))
    if SHAPES[shape] == "sphere":
        return _unit(q)
    radius, half = CAPSULE_RADIUS * a, CAPSULE_HALF_LENGTH * a
    axis_point = np.stack([np.clip(p[..., 0], -half, half), np.full(p.shape[:-1], radius), np.zeros(p.shape[:-1])], -1)
    return _unit(p - axis_point)


def intersect_room(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, is_floor, unit normal) of the rays' exit from the room: the floor or one of the two walls."""
    corner = np.array([0.0, 0.0, -CORNER_DISTANCE])
    planes = [(np.array([0.0, 1.0, 0.0]), np.zeros(3))]
    planes += [(np.array([np.sin(side * np.pi / 4), 0.0, np.cos(side * np.pi / 4)]), corner) for side in (1, -1)]
    ts = []
    for normal, point in planes:  # normals point into the room; a ray leaves through a plane it moves against
        dn = d @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            ts.append(np.where(dn < 0, -((o - point) @ normal) / np.where(dn < 0, dn, -1.0), np.inf))
    ts = np.stack(ts, axis=-1)
    which = np.argmin(ts, axis=-1)
    normals = np.stack([normal for normal, _ in planes])
    return np.take_along_axis(ts, which[..., None], axis=-1)[..., 0], which == 0, normals[which]


def _value(points: np.ndarray, normals: np.ndarray, lit) -> np.ndarray:
    """HSV value of surface points: ambient plus Lambert from the point light where `lit`."""
    cosine = _dot(normals, _unit(LIGHT - points))
    return AMBIENT + (1 - AMBIENT) * np.maximum(cosine, 0.0) * lit


def _pixel_mean(samples: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[..., rows * S, cols * S] ray values -> [..., rows, cols] pixel means."""
    shape = samples.shape[:-2] + (rows, SUPERSAMPLE, cols, SUPERSAMPLE)
    return samples.reshape(shape).mean(axis=(-3, -1))


def _backgrounds() -> np.ndarray:
    """[15 orientations, 2 (floor, wall), 64, 64] value-weighted coverage of the empty room."""
    origin, d = camera_rays(ORIENTATIONS, (0, IMAGE_SIZE), (0, IMAGE_SIZE))
    t, is_floor, normal = intersect_room(origin, d)
    value = _value(origin + t[..., None] * d, normal, 1.0)
    return np.stack([_pixel_mean(value * is_floor, IMAGE_SIZE, IMAGE_SIZE), _pixel_mean(value * ~is_floor, IMAGE_SIZE, IMAGE_SIZE)], 1)


def _room_view(rows, cols) -> dict[str, np.ndarray]:
    """What the camera sees of the empty room through pixels rows x cols, for every orientation (shared by all
    objects): ray origins and directions, the room's hit t, floor flag, hit points, unit vectors and distances to
    the light, and the lit value."""
    origin, d = camera_rays(ORIENTATIONS, rows, cols)
    t_room, is_floor, normal = intersect_room(origin, d)
    ground = origin + t_room[..., None] * d
    to_light = LIGHT - ground
    distance = np.sqrt(_dot(to_light, to_light))
    return {"origin": origin, "d": d, "t": t_room, "is_floor": is_floor, "start": ground + 1e-7 * normal,
            "light": to_light / distance[..., None], "distance": distance, "value": _value(ground, normal, 1.0)}


def _object_masks(shape: int, scale: float, view: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For every orientation: [15, 3 (floor, wall, object), rows, cols] value-weighted coverage with the object, its
    shadow and occlusion; and bool [15, rows, cols], the pixels the object or its shadow touch."""
    origin, d = view["origin"], view["d"]
    t_obj = intersect_object(shape, scale, origin, d)
    hit = t_obj < view["t"]
    lit = intersect_object(shape, scale, view["start"], view["light"]) >= view["distance"]
    room_value = np.where(lit, view["value"], AMBIENT)
    points = origin + np.where(hit, t_obj, 0.0)[..., None] * d
    obj_value = np.where(hit, _value(points, object_normal(shape, scale, points), 1.0), 0.0)
    size = (d.shape[1] // SUPERSAMPLE, d.shape[2] // SUPERSAMPLE)
    is_floor = view["is_floor"]
    masks = np.stack([_pixel_mean(room_value * (~hit & is_floor), *size), _pixel_mean(room_value * (~hit & ~is_floor), *size),
                      _pixel_mean(obj_value, *size)], 1)
    touched = _pixel_mean((hit | ~lit).astype(np.float64), *size) > 0
    return masks, touched


@functools.cache
def scene_tables() -> dict[str, np.ndarray]:
    """The renderer's tables, read-only float32:
    top `[15 orientations x 10 wall hues, 3, 18 * 64]` and bottom `[15 x 10 floor hues, 3, 17 * 64]`: the background
    coloured by one hue above and below the band; band `[4 shapes x 8 scales x 15 orientations, 3 surfaces, 29 * 64]`;
    colours `[10 hues, 3]` (RGB at value 1). Built in ~1 s."""
    side = IMAGE_SIZE
    backgrounds = _backgrounds()  # [15, 2, 64, 64]
    (r0, r1), (c0, c1) = BAND, COLUMNS
    floor, wall = backgrounds[:, 0], backgrounds[:, 1]
    assert not floor[:, :r0].any() and not wall[:, r1:].any(), "floor above the band or wall below it: move BAND"
    band = np.zeros((len(SHAPES), len(SCALES), len(ORIENTATIONS), 3, r1 - r0, side))
    band[..., 0, :, :], band[..., 1, :, :] = floor[:, r0:r1], wall[:, r0:r1]
    view = _room_view((r0 - 1, r1 + 1), (c0 - 1, c1 + 1))  # one pixel of margin, which must stay untouched
    for s in range(len(SHAPES)):
        for c, scale in enumerate(SCALES):
            masks, touched = _object_masks(s, scale, view)
            edge = touched[:, 0].any() or touched[:, -1].any() or touched[:, :, 0].any() or touched[:, :, -1].any()
            assert not edge, f"{SHAPES[s]} at scale {scale:.3f}: object or shadow leaves BAND x COLUMNS"
            band[s, c, :, :, :, c0:c1] = masks[:, :, 1:-1, 1:-1]
    colours = hsv_colours(HUES)
    top = wall[:, None, None, :r0] * colours[None, :, :, None, None]  # [15, 10, 3, r0, 64]
    bottom = floor[:, None, None, r1:] * colours[None, :, :, None, None]
    tables = {
        "top": top.reshape(len(ORIENTATIONS) * len(HUES), 3, r0 * side),
        "bottom": bottom.reshape(len(ORIENTATIONS) * len(HUES), 3, (side - r1) * side),
        "band": band.reshape(-1, 3, (r1 - r0) * side),
        "colours": colours,
    }
    for key, table in tables.items():
        assert np.isfinite(table).all() and table.min() >= 0, f"table {key} has values outside [0, inf)"
        tables[key] = (table * (SHRINK if key != "colours" else 1.0)).astype(np.float32)
        tables[key].flags.writeable = False
    return tables


class Shapes3D(GroundTruthDataset):
    """Procedural 3dshapes: floor, wall and object hue (10 each) x scale (8) x shape (4) x orientation (15), RGB 64x64.

    See the module docstring for the scene, the tables and the tolerance across machines.
    """

    name = "shapes3d"
    factor_names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    factor_classes = {"shape": SHAPES}
    factor_sizes = (len(HUES), len(HUES), len(HUES), len(SCALES), len(SHAPES), len(ORIENTATIONS))
    image_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    summary = (
        "Procedural 3dshapes: a cube, cylinder, sphere or capsule on a floor in front of a wall corner, under one light, "
        "on the exact 3dshapes factor grid (floor, wall and object hue, scale, shape, camera orientation)."
    )

    def __init__(self):
        self._tables = scene_tables()

    def _render(self, factors: np.ndarray) -> np.ndarray:
        n = len(factors)
        floor_hue, wall_hue, object_hue, scale, shape, orientation = factors.T
        tables, hues = self._tables, len(HUES)
        r0, r1 = BAND[0] * IMAGE_SIZE, BAND[1] * IMAGE_SIZE
        images = np.empty((n, 3, IMAGE_SIZE * IMAGE_SIZE), dtype=np.float32)
        images[:, :, :r0] = tables["top"][orientation * hues + wall_hue]
        images[:, :, r1:] = tables["bottom"][orientation * hues + floor_hue]
        colours = tables["colours"]
        surfaces = np.stack([colours[floor_hue], colours[wall_hue], colours[object_hue]], axis=2)  # [n, channel, surface]
        entry = (shape * len(SCALES) + scale) * len(ORIENTATIONS) + orientation
        np.matmul(surfaces, tables["band"][entry], out=images[:, :, r0:r1])
        return images.reshape(n, 3, IMAGE_SIZE, IMAGE_SIZE)

    def render_torch(self, factors):
        """`render` in torch on the device of `factors` (a `[N, 6]` int64 tensor of valid factors, as `sample_factors`
        draws them): the same table lookups, and the band's float32 product done by torch there, so the pixels agree
        with `render`'s to float rounding (about 1e-7), not bit for bit."""
        import torch

        tables, hues = self._device_tables(factors.device), len(HUES)
        floor_hue, wall_hue, object_hue, scale, shape, orientation = factors.unbind(1)
        colours = tables["colours"]
        surfaces = torch.stack([colours[floor_hue], colours[wall_hue], colours[object_hue]], dim=2)  # [n, channel, surface]
        band = torch.bmm(surfaces, tables["band"][(shape * len(SCALES) + scale) * len(ORIENTATIONS) + orientation])
        images = torch.cat([tables["top"][orientation * hues + wall_hue], band, tables["bottom"][orientation * hues + floor_hue]], 2)
        return images.view(len(factors), 3, IMAGE_SIZE, IMAGE_SIZE)

    def _device_tables(self, device) -> dict:
        """`scene_tables()` as float32 tensors on `device`, copied once per device."""
        import torch

        cache = self.__dict__.setdefault("_on_device", {})
        if device not in cache:
            cache[device] = {key: torch.as_tensor(np.array(table), device=device) for key, table in self._tables.items()}
        return cache[device]

    def spec(self) -> dict:
        return {"name": self.name}
