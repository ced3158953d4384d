"""Clean speech sources, seeded artifacts and the tf.data pipeline."""
