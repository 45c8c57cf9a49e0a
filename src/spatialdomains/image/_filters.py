"""The reference's patch filter (spec A3.2), under an honest name, vectorised over stacks of patches.

What the reference calls "Gaussian blur + band-pass 245-275" computes, per patch (on a 512 px grid):

1. greyscale (8-bit luminance 0.299 R + 0.587 G + 0.114 B, as OpenCV reads a PNG in greyscale);
2. 5x5 Gaussian blur (sigma 1.1, OpenCV's value for that kernel size);
3. centred 2-D FFT, multiplied by a box that is 1 on the centred indices [245, 275) x [245, 275). The DC term
   sits at index 256, so the box keeps the integer frequencies **-11 ... +18 cycles per patch** on both axes,
   DC included: it is an **asymmetric low-pass box**, not a band-pass;
4. modulus of the inverse FFT (the asymmetric box makes the result complex);
5. 15x15 Gaussian blur (sigma 2.6).

Hence ``kind="lowpass_box"``. ``kind="none"`` leaves the RGB patches untouched.

Patch sizes other than 512: the box is defined in cycles per patch, so the same frequencies (-11 ... +18) are
kept at any patch side (clipped to what the grid can hold), i.e. the same physical scale; the two blurs' kernel
sizes and sigmas are scaled by ``patch_px / 512`` (at 512 they are exactly the reference's). Because the box is
asymmetric, a sinusoid whose frequency is kept on one side only (+12 ... +18 cycles) keeps about half its
amplitude, and sinusoids beyond +18 / below -11 are removed.

Output: greyscale ``(N, p, p)``; it is replicated to 3 channels at the network input. With ``dtype=uint8``
(default) values are rounded and clipped to [0, 255], as the reference's 8-bit PNG write does.
"""

from __future__ import annotations

import os

import numpy as np

from .._utils import InputError

__all__ = ["frequency_filter", "lowpass_box_frequencies", "lowpass_box_mask", "FILTERS", "to_grey"]

FILTERS = ("lowpass_box", "none")
REFERENCE_GRID = 512
#: Centred-spectrum indices of the reference's box on the 512 grid: [245, 275) around DC at 256.
REFERENCE_BOX = (245, 275)
#: (kernel size, sigma) of the reference's blurs on the 512 grid (OpenCV sigma for ksize 5 and 15).
PRE_BLUR = (5, 1.1)
POST_BLUR = (15, 2.6)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def lowpass_box_frequencies(n: int) -> tuple[int, int]:
    """Kept integer frequencies ``(lo, hi)`` (inclusive, cycles per patch) on an ``n``-point grid.

    The reference's [245, 275) around 256 gives (-11, 18); they are clipped to ``[-(n // 2), (n - 1) // 2]``.
    """
    centre = REFERENCE_GRID // 2
    lo, hi = REFERENCE_BOX[0] - centre, REFERENCE_BOX[1] - 1 - centre
    return max(lo, -(n // 2)), min(hi, (n - 1) // 2)


def lowpass_box_mask(n: int) -> np.ndarray:
    """Boolean ``(n, n)`` mask in **unshifted** FFT order (``np.fft.fftfreq`` layout) of the kept box."""
    lo, hi = lowpass_box_frequencies(n)
    freq = np.rint(np.fft.fftfreq(n) * n).astype(int)
    keep = (freq >= lo) & (freq <= hi)
    return keep[:, None] & keep[None, :]


def to_grey(patches: np.ndarray) -> np.ndarray:
    """``(N, p, p, 3)`` RGB or ``(N, p, p)`` grey -> ``(N, p, p)`` float32 luminance.

    uint8 RGB is converted as the reference reads its PNGs in greyscale: OpenCV's 8-bit luminance
    (0.299 R + 0.587 G + 0.114 B, rounded).
    """
    x = np.asarray(patches)
    if x.ndim == 4 and x.shape[-1] == 3 and x.dtype == np.uint8:
        import cv2

        out = np.empty(x.shape[:3], dtype=np.float32)
        for i in range(len(x)):
            out[i] = cv2.cvtColor(np.ascontiguousarray(x[i]), cv2.COLOR_RGB2GRAY)
        return out
    if x.ndim == 4 and x.shape[-1] == 3:
        return np.tensordot(x.astype(np.float32, copy=False), _LUMA, axes=([3], [0])).astype(np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        return x[..., 0].astype(np.float32)
    if x.ndim == 3:
        return x.astype(np.float32)
    raise InputError(f"patches have shape {x.shape}; expected (N, p, p, 3) RGB or (N, p, p) grey")


def _blur_params(spec: tuple[int, float], n: int) -> tuple[int, float] | None:
    ksize, sigma = spec
    if n == REFERENCE_GRID:
        return ksize, 0.0  # OpenCV derives the reference's sigma from the kernel size
    k = int(round(ksize * n / REFERENCE_GRID))
    k = k if k % 2 == 1 else k + 1
    if k < 3:
        return None
    return k, sigma * n / REFERENCE_GRID


def _blur_stack(x: np.ndarray, params: tuple[int, float] | None) -> np.ndarray:
    if params is None:
        return x
    import cv2

    k, sigma = params
    for i in range(len(x)):  # OpenCV is C code; the loop is over patches only
        x[i] = cv2.GaussianBlur(x[i], (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
    return x


def _lowpass_box(grey: np.ndarray, workers: int | None) -> np.ndarray:
    import scipy.fft as sfft

    n = grey.shape[-1]
    grey = _blur_stack(grey, _blur_params(PRE_BLUR, n))
    mask = lowpass_box_mask(n)
    spec = sfft.fft2(grey, axes=(-2, -1), workers=workers)
    spec *= mask
    out = np.abs(sfft.ifft2(spec, axes=(-2, -1), workers=workers)).astype(np.float32)
    return _blur_stack(out, _blur_params(POST_BLUR, n))


def frequency_filter(patches: np.ndarray, kind: str = "lowpass_box", *, dtype=np.uint8,
                     out: np.ndarray | None = None, batch_size: int = 64,
                     workers: int | None = None) -> np.ndarray:
    """Filter a stack of patches (spec A3.2): grey, blur, low-pass box in the FFT, modulus, blur.

    Parameters
    ----------
    patches
        ``(N, p, p, 3)`` RGB (uint8, 0-255) or ``(N, p, p)`` grey; a memmap works (read in batches).
    kind
        'lowpass_box' (the reference's filter, see module docstring) or 'none' (returns the patches as they are).
    dtype
        Output dtype: uint8 (rounded, clipped to 0-255, as the reference's PNG files) or float32 (exact).
    out
        Optional array (e.g. a memmap) to write into; shape ``(N, p, p)`` (or the input shape for 'none').
    batch_size
        Patches per FFT batch (memory ~ 16 bytes x batch x p^2).

    Returns
    -------
    ``(N, p, p)`` grey for 'lowpass_box'; the input stack for 'none'.
    """
    if kind not in FILTERS:
        raise InputError(f"unknown filter {kind!r}; choose one of {FILTERS}")
    x = patches
    if x.ndim not in (3, 4) or x.shape[1] != x.shape[2]:
        raise InputError(f"patches have shape {x.shape}; expected square patches (N, p, p[, 3])")
    dtype = np.dtype(dtype)
    if kind == "none":
        if out is None:
            return np.asarray(x).astype(dtype, copy=False)
        out[...] = x
        return out
    n_patches, p = x.shape[0], x.shape[1]
    shape = (n_patches, p, p)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape:
        raise InputError(f"out has shape {out.shape}; expected {shape}")
    workers = workers or min(8, os.cpu_count() or 1)
    for s in range(0, n_patches, batch_size):
        grey = to_grey(x[s:s + batch_size])
        res = _lowpass_box(grey, workers)
        if np.issubdtype(out.dtype, np.integer):
            res = np.clip(np.rint(res), 0, 255)
        out[s:s + batch_size] = res
    return out
