"""PDQ's 16×16 DCT of a frame, by the ``pdqhash`` wheel's own C++ code, with the GIL released.

``pdqhash.compute_float`` holds the GIL for all of its work (a Cython ``def`` that never lets it
go), so the worker threads that hash the tapped frames ran one at a time, and the output checks
beside them waited for it too. The wheel's extension module exports the C++ function that
``compute_float`` wraps (``facebook::pdq::hashing::pdqFloat256FromFloatLuma``); `dct` calls it
through ``ctypes``, which releases the GIL for the call, on the luma that ``compute_float``
computes (the same NumPy expression, so the same float32 values). The result is
``compute_float`` 's bit for bit (tests/test_distinct.py). 96 tapped frames of 320×240 took 63 ms
of CPU against 89 ms, and two threads hashed 2 × 96 frames in 67 ms against 127 ms.

Where the module does not export that function (another build or version of the wheel), `dct`
is ``compute_float`` itself; `WITHOUT_GIL` says which one runs.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pdqhash
from pdqhash import bindings

# The Itanium C++ ABI name (Linux and macOS compilers) of
# void pdqFloat256FromFloatLuma(float* fullBuffer1, float* fullBuffer2, int numRows, int numCols,
#     float buffer64x64[64][64], float buffer16x64[16][64], float output16x16[16][16], int& quality)
# The name carries the parameter types, so a changed signature is a missing name, never a bad call.
_SYMBOL = "_ZN8facebook3pdq7hashing24pdqFloat256FromFloatLumaEPfS2_iiPA64_fS4_PA16_fRi"


def _load():
    try:
        fn = getattr(ctypes.CDLL(bindings.__file__), _SYMBOL)
    except (OSError, AttributeError):
        return None
    ptr = ctypes.c_void_p
    fn.argtypes = [ptr, ptr, ctypes.c_int, ctypes.c_int, ptr, ptr, ptr,
                   ctypes.POINTER(ctypes.c_int)]
    fn.restype = None
    return fn


_FROM_FLOAT_LUMA = _load()
WITHOUT_GIL = _FROM_FLOAT_LUMA is not None


def dct(frame: np.ndarray) -> tuple[np.ndarray, int]:
    """PDQ's DCT of an ``h×w×3`` uint8 RGB frame, as ``pdqhash.compute_float`` gives it: the 256
    coefficients (float32, in its order: the 16×16 grid flattened, last first) and PDQ's
    quality (0–100)."""
    if _FROM_FLOAT_LUMA is None:
        values, quality = pdqhash.compute_float(np.ascontiguousarray(frame))
        return np.asarray(values, dtype=np.float32), int(quality)
    frame = np.ascontiguousarray(frame)
    # compute_float's luma, operation for operation (float64, then float32); row-major, as the
    # C++ code reads it.
    luma = (frame[:, :, 0] * 0.299 + frame[:, :, 1] * 0.587
            + frame[:, :, 2] * 0.114).astype(np.float32, order="C")
    rows, cols = luma.shape
    scratch = np.zeros_like(luma)
    b64x64 = np.empty((64, 64), np.float32)
    b16x64 = np.empty((16, 64), np.float32)
    out = np.empty((16, 16), np.float32)
    quality = ctypes.c_int(0)
    _FROM_FLOAT_LUMA(luma.ctypes.data, scratch.ctypes.data, rows, cols, b64x64.ctypes.data,
                     b16x64.ctypes.data, out.ctypes.data, ctypes.byref(quality))
    return out.reshape(-1)[::-1], quality.value


# A first call while the module is imported (one thread), through the blur and the DCT: whatever
# the C++ code sets up on its first use is set up before worker threads call it side by side.
dct(np.zeros((16, 16, 3), np.uint8))
