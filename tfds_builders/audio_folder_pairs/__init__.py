"""audio_folder_pairs: a user's folder of clean (and optionally damaged) audio."""
