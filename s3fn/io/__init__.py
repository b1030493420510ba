"""File formats: one module per format with its reader (and its writer, where there is one).

`open_source(path)` reads a cube window by window, `read_cube` / `read_labels` read it whole,
in any supported format (`SUPPORTED`); the format follows the suffix (`s3fn.io.dispatch`).
"""

from s3fn.io.dispatch import (
    CONTAINER_SUFFIXES,
    NETCDF_SUFFIX,
    RASTER_SUFFIXES,
    SUPPORTED,
    from_array,
    is_supported,
    open_source,
    read_cube,
    read_labels,
)
from s3fn.io.source import CubeSource, Geotransform

__all__ = [
    "CONTAINER_SUFFIXES",
    "NETCDF_SUFFIX",
    "RASTER_SUFFIXES",
    "SUPPORTED",
    "CubeSource",
    "Geotransform",
    "from_array",
    "is_supported",
    "open_source",
    "read_cube",
    "read_labels",
]
