"""Pretrained audio networks ported to Keras 3, for ``AudioEmbeddingLoss``.

- :mod:`spectral_restore.embeddings.musicnn`: musicnn and vgg music taggers; the
  pretrained checkpoints come with the ``musicnn`` wheel.
- :mod:`spectral_restore.embeddings.openl3`: the OpenL3 audio network; weights from
  the official ``.h5`` files.
"""

from spectral_restore.embeddings.musicnn import MusicnnNetwork, load_musicnn
from spectral_restore.embeddings.openl3 import OpenL3Network, load_openl3

__all__ = ["MusicnnNetwork", "OpenL3Network", "load_musicnn", "load_openl3"]
