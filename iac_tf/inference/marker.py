"""How the files ``iac predict`` writes are recognised (TensorFlow-free): every label and
``_probabilities`` NIfTI it writes carries :data:`PREDICTION_TAG` in its header's ``descrip``
field. ``iac predict`` replaces an existing output file only when it carries the tag, and
``iac evaluate-folder`` uses it to tell a prediction folder from a ground-truth folder.
"""

from __future__ import annotations

import os
import pathlib

import nibabel as nib
import numpy as np

#: The NIfTI header ``descrip`` of every file ``iac predict`` writes.
PREDICTION_TAG = b"iac_tf prediction"


def is_prediction(path: str | os.PathLike) -> bool:
    """``path`` is a NIfTI file written by ``iac predict`` (its header carries
    :data:`PREDICTION_TAG`); only the header is read."""
    path = pathlib.Path(path)
    if not path.is_file():
        return False
    try:
        descrip = nib.load(str(path)).header["descrip"]
        return bytes(np.asarray(descrip).item()).rstrip(b"\0 ") == PREDICTION_TAG
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
