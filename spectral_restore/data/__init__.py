"""Clean speech sources, seeded artifacts, audio files (``files``), level rules
(``levels``), the backend-neutral ``AudioDataset`` (``source``) and the ``tf.data``
pipeline (``pipeline``, TensorFlow only)."""
