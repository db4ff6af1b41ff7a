"""Options of the ``local`` backend: the built-in redirect-on-write pool."""

from oslo_config import cfg

MIN_CHUNK = 4096
MAX_CHUNK = 4 * 1024 * 1024

LOCAL_OPTS = [
    cfg.StrOpt(
        "local_pool_path",
        help="Directory of the pool; defaults to ``$state_path/pools/<backend group name>``.",
    ),
    cfg.IntOpt(
        "local_pool_capacity_gb",
        default=100,
        min=1,
        help="Capacity in GiB given to the pool when it is created (its data file is sparse, "
        "so space is used only as data is written). Ignored once the pool exists.",
    ),
    cfg.IntOpt(
        "local_pool_chunk_size",
        default=65536,
        min=MIN_CHUNK,
        max=MAX_CHUNK,
        help="Chunk size in bytes, a power of two, set when the pool is created: the unit of "
        "space allocation and of redirect-on-write. Ignored once the pool exists.",
    ),
    cfg.IntOpt(
        "local_pool_node_cache_mb",
        default=256,
        min=1,
        help="Memory in MiB for the pool's metadata nodes kept in memory (each maps 1024 "
        "chunks, so 256 MiB holds the whole mapping of about 3.8 TiB written with 64 KiB "
        "chunks); beyond it the least recently used are dropped and read again from the "
        "metadata when needed.",
    ),
    cfg.BoolOpt(
        "local_pool_create",
        default=True,
        help="Create the pool on first start when its directory holds none.",
    ),
]
