"""Core helpers shared by every stage and model: atomic writes, command-line plumbing and stage options, images,
devices, hashing, safe loading of downloaded files. Nothing here imports a stage or a model."""
