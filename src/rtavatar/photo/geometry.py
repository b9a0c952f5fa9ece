"""Pixel geometry the photo renderer shares: boxes clipped to a picture, feathered masks, a
Gaussian blur, one thin-plate spline and the resampling of an image through a backward map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import RBFInterpolator

from rtavatar.photo.landmarks import smoothstep


@dataclass(frozen=True)
class Clip:
    """A square box (x0, y0, side) in a picture of (h, w): the part inside the picture, as picture
    rows / columns (`dst`) and as box rows / columns (`src`)."""

    dst: tuple[int, int, int, int]  # y0, y1, x0, x1 in the picture
    src: tuple[int, int, int, int]  # the same pixels in box coordinates

    @classmethod
    def of(cls, x0: int, y0: int, side: int, shape: tuple[int, ...]) -> "Clip":
        h, w = shape[:2]
        dst = (max(0, y0), min(h, y0 + side), max(0, x0), min(w, x0 + side))
        return cls(dst, (dst[0] - y0, dst[1] - y0, dst[2] - x0, dst[3] - x0))

    def paste(self, out: np.ndarray, box: np.ndarray) -> None:
        """Write the inside part of `box` (side, side, C) uint8 into picture `out` (in place)."""
        dy0, dy1, dx0, dx1 = self.dst
        sy0, sy1, sx0, sx1 = self.src
        out[dy0:dy1, dx0:dx1] = box[sy0:sy1, sx0:sx1]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float pixels rounded (half up) and clipped to uint8."""
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def box_pixels(image: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """The (side, side, 3) pixels of a crop box (x0, y0, side), edge-padded where it leaves the picture."""
    x0, y0, side = box
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]


def feather_mask(side: int, inset: float = 0.06, feather: float = 0.06) -> np.ndarray:
    """(side, side, 1) float32 blend weight: 1 inside, a smooth ramp over the outer border."""
    u = (np.arange(side, dtype=np.float32) + 0.5) / side
    edge = np.minimum(u, 1 - u)  # distance to the nearest border, in crop sides
    ramp = smoothstep(np.clip((edge - inset) / max(feather, 1e-6), 0, 1))
    return (ramp[:, None] * ramp[None, :])[..., None]


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W), edges replicated (a torch conv: it runs on the
    renderer's tensors without a copy, and its radius, 3 sigma, is what the shipped tunings used)."""
    r = max(int(3 * sigma), 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / max(sigma, 1e-3)) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[0]
    y = F.pad(x[None], (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="replicate")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def border_points(side: int, n_per: int = 5) -> np.ndarray:
    """Anchor points along the border of a (side, side) square (a spline keeps them fixed)."""
    s = np.linspace(0, side - 1, n_per)
    z, o = np.zeros(n_per), np.full(n_per, side - 1.0)
    return np.unique(np.concatenate([np.stack([s, z], 1), np.stack([s, o], 1), np.stack([z, s], 1), np.stack([o, s], 1)]), axis=0)


def tps_backward_map(dst: np.ndarray, src: np.ndarray, side: int, grid: int = 64, reg: float = 1e-5) -> torch.Tensor:
    """A (1, side, side, 2) grid_sample grid (align_corners=True) that maps output pixels near
    `dst` to `src`: a thin-plate spline (scipy's) fitted in [0, 1] coordinates, evaluated on a
    coarse grid and upsampled (its displacement field is smooth: a 64-point grid loses nothing visible)."""
    d, s = dst / side, src / side
    spline = RBFInterpolator(d, s - d, kernel="thin_plate_spline", smoothing=reg, degree=1)
    g = (np.arange(grid) + 0.5) / grid
    gx, gy = np.meshgrid(g, g)
    disp = spline(np.stack([gx.ravel(), gy.ravel()], 1))
    field = torch.from_numpy(disp.reshape(grid, grid, 2).astype(np.float32)).permute(2, 0, 1)[None]
    field = F.interpolate(field, size=(side, side), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    u = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    base = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1)
    pos = base + field - 0.5 / side  # source position in [0, 1] of pixel centres
    return (pos * side / (side - 1) * 2 - 1)[None]


def warp_image(image: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """Resample (H, W, C) `image` through a grid_sample grid (align_corners=True) -> float32."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return y[0].permute(1, 2, 0).clamp(0, 255).numpy()


def warp_rows(image: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Resample each output pixel from the source row `rows[y, x]` of its own column."""
    h, w = image.shape[:2]
    cols = np.broadcast_to(np.arange(w, dtype=np.float64), rows.shape)
    grid = torch.from_numpy(np.stack([cols / max(w - 1, 1), rows / max(h - 1, 1)], -1) * 2 - 1).float()[None]
    return warp_image(image, grid)


def sample_grid(y0: int, y1: int, x0: int, x1: int, height: int, width: int) -> torch.Tensor:
    """(1, y1 - y0, x1 - x0, 2) grid_sample coordinates (align_corners=False) of the pixel centres
    of rows y0..y1 and columns x0..x1 of a (height, width) image."""
    u = lambda a, b, n: (torch.arange(a, b, dtype=torch.float32) + 0.5) / n * 2 - 1  # noqa: E731
    gy, gx = torch.meshgrid(u(y0, y1, height), u(x0, x1, width), indexing="ij")
    return torch.stack([gx, gy], -1)[None]
