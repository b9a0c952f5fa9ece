"""Typed errors. Every message names the offending file (or input) and the problem."""

from __future__ import annotations


class RTAvatarError(Exception):
    """Base class for every error rtavatar raises on bad input."""


class MediaError(RTAvatarError, ValueError):
    """A media file or in-memory media array cannot be used."""


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The file does not exist."""


class UnsupportedMediaError(MediaError):
    """The file exists but is of a kind we do not read (or has no stream we need)."""


class CorruptMediaError(MediaError):
    """The file claims a known format but cannot be decoded."""


class EmptyAudioError(MediaError):
    """Audio has zero samples (or is too short to use)."""


class ChannelLayoutError(MediaError):
    """Audio or image has a channel count we cannot interpret."""


class MediaSizeError(MediaError):
    """Dimensions, duration or file size outside the sane limits."""


class SpeechSynthesisError(RTAvatarError, RuntimeError):
    """espeak-ng is missing or failed."""


class DatasetError(RTAvatarError, ValueError):
    """A dataset directory is missing files or does not follow docs/DATA.md."""


class CheckpointError(RTAvatarError, ValueError):
    """A checkpoint file is missing, truncated or damaged, or a run directory is misused."""
