"""Clean speech sources, seeded artifacts, audio files (``files``), level rules
(``levels``), the backend-neutral ``AudioDataset`` (``source``), the TFDS readers
(``tfds_sources``, TensorFlow only) and the ``tf.data`` pipeline (``pipeline``,
TensorFlow only)."""
