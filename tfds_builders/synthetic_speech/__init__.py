"""synthetic_speech: clean speech synthesized offline with espeak-ng and flite."""
