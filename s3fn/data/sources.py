"""Lazy cube sources, kept under this name for `from s3fn.data.sources import open_source`.

The code lives in `s3fn.io`: `open_source` and `from_array` in `s3fn.io.dispatch`, `CubeSource`
in `s3fn.io.source`, each format's reader in its own module.
"""

from s3fn.io import CubeSource, Geotransform, from_array, open_source

__all__ = ["CubeSource", "Geotransform", "from_array", "open_source"]
