"""Data layer: the sample schema and WebDataset shards (writing, validated streaming reads, manifest)."""
