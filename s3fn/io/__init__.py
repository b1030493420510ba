"""File formats: one module per format with its reader (and its writer, where there is one).

`open_source(path)` reads a cube window by window, `read_cube` / `read_labels` read it whole,
in any supported format (`SUPPORTED`); `open_map_writer` writes a label or probability map.
The format follows the suffix (`s3fn.io.dispatch`).
"""

from s3fn.io.dispatch import (
    CONTAINER_SUFFIXES,
    ENVI_SUFFIXES,
    GEOTIFF_SUFFIXES,
    NETCDF_SUFFIX,
    SUPPORTED,
    from_array,
    is_supported,
    open_map_writer,
    open_source,
    read_cube,
    read_labels,
)
from s3fn.io.map_writer import LABELS, PROBABILITIES, MapWriter
from s3fn.io.source import CubeSource, Geotransform

__all__ = [
    "CONTAINER_SUFFIXES",
    "ENVI_SUFFIXES",
    "GEOTIFF_SUFFIXES",
    "LABELS",
    "NETCDF_SUFFIX",
    "PROBABILITIES",
    "SUPPORTED",
    "CubeSource",
    "Geotransform",
    "MapWriter",
    "from_array",
    "is_supported",
    "open_map_writer",
    "open_source",
    "read_cube",
    "read_labels",
]
