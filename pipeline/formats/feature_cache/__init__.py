"""HDF5 feature-cache shards: the per-image embedding rows (globals, blocks, objects) that the OAKE stage writes and
the detector's data transform and the ml prompt read.

- :mod:`.layout`: datasets, shapes, dtypes and attrs of a shard; constants, shard assignment, checksum helpers;
- :mod:`.writer`: ``ShardWriter``, crash-safe and resumable through ``<path>.partial``, repacked on finalize;
- :mod:`.final`: the final copy a verified partial is repacked into (contiguous or gzip rows);
- :mod:`.reader`: ``ShardReader``, random access to the rows of a final shard (memory-mapped, fork-safe);
- :mod:`.verify`: ``verify_shard``, everything wrong with a final shard as readable strings;
- :mod:`.space`: the free-space checks of the writer and ``DiskSpaceError`` (a full disk, named with the shard).
"""

from pipeline.formats.feature_cache.layout import (
    COMPRESSED_CHUNK,
    COMPRESSIONS,
    FORMAT_VERSION,
    KINDS,
    NORM_TOL,
    RESERVED_ATTRS,
    STATE_FIELDS,
    STORAGES,
    CacheError,
    shard_image_ids,
)
from pipeline.formats.feature_cache.reader import ShardReader
from pipeline.formats.feature_cache.space import DiskSpaceError
from pipeline.formats.feature_cache.verify import verify_shard
from pipeline.formats.feature_cache.writer import ShardWriter

__all__ = [
    "COMPRESSED_CHUNK",
    "COMPRESSIONS",
    "FORMAT_VERSION",
    "KINDS",
    "NORM_TOL",
    "RESERVED_ATTRS",
    "STATE_FIELDS",
    "STORAGES",
    "CacheError",
    "DiskSpaceError",
    "ShardReader",
    "ShardWriter",
    "shard_image_ids",
    "verify_shard",
]
