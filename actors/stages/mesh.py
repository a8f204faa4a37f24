"""Closed triangle meshes from numpy: the primitives jewelry is made of, volume, binary STL.

Volume comes from the divergence theorem (sum of signed tetrahedra against the origin), which
is exact for a closed, consistently oriented mesh; every primitive here is built closed and
flipped to outward orientation, so the figure converges to the analytic volume as resolution
grows. Parts of a piece are unioned by summing volumes; where they touch (a prong on a band)
the overlap is a fraction of a percent and is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_STL_DTYPE = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (n, 3) float64, millimetres
    faces: np.ndarray  # (m, 3) int64, indices into vertices

    @property
    def triangles(self) -> int:
        return int(self.faces.shape[0])

    def volume_mm3(self) -> float:
        v0, v1, v2 = (self.vertices[self.faces[:, k]] for k in range(3))
        return float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0)

    def bounding_box_mm(self) -> tuple[float, float, float]:
        extent = self.vertices.max(axis=0) - self.vertices.min(axis=0)
        return (round(float(extent[0]), 3), round(float(extent[1]), 3), round(float(extent[2]), 3))

    def transformed(self, rotation: np.ndarray, translation: np.ndarray) -> Mesh:
        return Mesh(self.vertices @ rotation.T + translation, self.faces)

    def replicated(self, rotations: np.ndarray, translations: np.ndarray) -> Mesh:
        """Many copies of this mesh at once, e.g. the links of a chain: (k, 3, 3) and (k, 3)."""
        k = rotations.shape[0]
        vertices = np.einsum("kij,nj->kni", rotations, self.vertices) + translations[:, None, :]
        offsets = (np.arange(k) * self.vertices.shape[0])[:, None, None]
        return Mesh(vertices.reshape(-1, 3), (self.faces[None, :, :] + offsets).reshape(-1, 3))

    def write_stl(self, path: Path, name: str) -> None:
        v = self.vertices[self.faces].astype(np.float32)
        normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        lengths = np.linalg.norm(normals, axis=1, keepdims=True)
        records = np.zeros(self.triangles, dtype=_STL_DTYPE)
        records["normal"] = normals / np.where(lengths == 0, 1, lengths)
        records["v"] = v
        header = name.encode("ascii", "replace")[:80].ljust(80, b" ")
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("wb") as fh:
            fh.write(header)
            fh.write(np.uint32(self.triangles).tobytes())
            fh.write(records.tobytes())
        tmp.replace(path)


def merge(*meshes: Mesh) -> Mesh:
    offsets = np.cumsum([0] + [m.vertices.shape[0] for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.faces + off for m, off in zip(meshes, offsets, strict=True)]),
    )


def _outward(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    mesh = Mesh(vertices, faces)
    return mesh if mesh.volume_mm3() >= 0 else Mesh(vertices, faces[:, ::-1].copy())


def _grid_faces(rows: int, cols: int, wrap_rows: bool) -> np.ndarray:
    """Two triangles per quad of a rows x cols vertex grid that wraps around its columns."""
    i, j = np.meshgrid(np.arange(rows if wrap_rows else rows - 1), np.arange(cols), indexing="ij")
    a = i * cols + j
    b = ((i + 1) % rows) * cols + j
    c = ((i + 1) % rows) * cols + (j + 1) % cols
    d = i * cols + (j + 1) % cols
    return np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])


def torus(major_r: float, radial_r: float, axial_r: float, segments: int, sides: int) -> Mesh:
    """A ring around the z axis with an elliptical cross-section (radial x axial half-widths)."""
    u = np.linspace(0, 2 * np.pi, segments, endpoint=False)[:, None]
    v = np.linspace(0, 2 * np.pi, sides, endpoint=False)[None, :]
    rho = major_r + radial_r * np.cos(v)
    vertices = np.stack(
        [rho * np.cos(u), rho * np.sin(u), np.broadcast_to(axial_r * np.sin(v), (segments, sides))], -1
    ).reshape(-1, 3)
    return _outward(vertices, _grid_faces(segments, sides, wrap_rows=True))


def prism(profile_xy: np.ndarray, thickness: float) -> Mesh:
    """A star-shaped polygon (around its centroid) extruded along z, centred on z = 0."""
    n = profile_xy.shape[0]
    half = thickness / 2.0
    rim = np.concatenate(
        [np.column_stack([profile_xy, np.full(n, -half)]), np.column_stack([profile_xy, np.full(n, half)])]
    )
    centre = profile_xy.mean(axis=0)
    caps = np.array([[centre[0], centre[1], -half], [centre[0], centre[1], half]])
    vertices = np.concatenate([rim, caps])
    k = np.arange(n)
    nxt = (k + 1) % n
    sides = np.concatenate([np.column_stack([k, nxt, n + nxt]), np.column_stack([k, n + nxt, n + k])])
    bottom = np.column_stack([np.full(n, 2 * n), nxt, k])
    top = np.column_stack([np.full(n, 2 * n + 1), n + k, n + nxt])
    return _outward(vertices, np.concatenate([sides, bottom, top]))


def cylinder(radius: float, height: float, segments: int) -> Mesh:
    """An upright cylinder standing on z = 0."""
    t = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    mesh = prism(np.column_stack([radius * np.cos(t), radius * np.sin(t)]), height)
    return mesh.transformed(np.eye(3), np.array([0.0, 0.0, height / 2.0]))


def rotation_from_axes(x_axis: np.ndarray, y_axis: np.ndarray) -> np.ndarray:
    """The rotation taking local x and y onto the given (orthogonal) directions."""
    x = x_axis / np.linalg.norm(x_axis)
    y = y_axis - x * np.dot(x, y_axis)
    y /= np.linalg.norm(y)
    return np.column_stack([x, y, np.cross(x, y)])
