"""Pieces of tools/make_shards.py: input discovery, per-video decoding, shard writing and resume."""
