"""What the builders that read audio files share: the files they left out."""

from spectral_restore.data.files import ReadStats


class SkippedFilesMixin:
    """A builder preparing from audio files counts every file it leaves out in
    ``self.stats`` (a :class:`~spectral_restore.data.files.ReadStats`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stats = ReadStats()

    @property
    def skipped(self):
        """``(path, reason)`` of every file left out while preparing."""
        return self.stats.skipped
