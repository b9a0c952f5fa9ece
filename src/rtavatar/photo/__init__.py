"""The photo renderer: finding and framing the face in a photo, and turning generated frames
into the photo's own frames (paste-back: lips, lids, expression and head moved on the photo).

Below the engine and the synthetic-data package, above `models`: it imports models, media,
numpy / scipy / dlib, never `engine`, `data`, `training` or `evaluation`. This module imports
only the options (torch-free, for the CLI); import the submodules for the rest:
align (registration), landmarks (dlib's points by name), geometry, animator (the landmark
warp), mouth, lids, motion (head and expression), readers, compose (the compositors and the
render contract).
"""

from rtavatar.photo.options import DEFAULT_PASTE_MODE, PASTE_MODES, PasteOptions

__all__ = ["DEFAULT_PASTE_MODE", "PASTE_MODES", "PasteOptions"]
