"""Stage oake: CLIP knowledge extraction (globals, blocks, objects) into HDF5 feature caches."""
