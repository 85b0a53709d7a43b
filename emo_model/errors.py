"""Errors with messages a user can act on: what was wrong, and what to do."""


class EMOError(Exception):
    """Base class for every error raised by emo_model."""


class WeightsError(EMOError, ValueError):
    """A weight file is missing, unreadable, or does not match the module it is loaded into."""


class AudioError(EMOError, ValueError):
    """An audio file or waveform cannot be used (missing, undecodable, too short)."""


class InputError(EMOError, ValueError):
    """A user input (image, mask, parameter) is invalid."""
