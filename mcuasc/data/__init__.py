"""Stage 1's data: the TAU Urban Acoustic Scenes 2022 Mobile layout, a synthetic set in it, a feature cache."""
