"""Tests of the loader: slots, workers, stats and the DataLoader front end."""
