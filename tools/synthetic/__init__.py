"""Pieces of tools/make_synthetic.py: the scene renderer and the per-dataset writers."""
