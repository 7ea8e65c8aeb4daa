"""Command-line tools run by path (`python tools/make_shards.py ...`) and their helper packages:
`tools.sharding` (video -> clip shards) and `tools.synthetic` (the synthetic video sets)."""
