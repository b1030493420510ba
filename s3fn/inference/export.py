"""Export a bundle's whole map model for one tile: ONNX, a torch.export program (.pt2), or an
AOTInductor package (.pt2 of compiled C++ that a C++ host runs without Python).

The artefact takes a raw tile (1, B, H, W) in the bundle's bands and gives the probabilities
of every window inside it (`TileMapModel`): a host that cuts tiles with the halo of
`map_model.halo` (reflecting the scene at its borders) gets `predict_map`'s probabilities.
Every export is run once against `Classifier.predict_map` on a seeded check tile; beside the
artefact, `<out>.json` says what it takes and gives and how far it was from `predict_map`.
An AOTInductor package also carries its halo, tile grid and torch version in its own metadata
(`package_metadata`), so a host needs nothing beside it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import os
import platform
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from s3fn import __version__
from s3fn._extension import load_extension
from s3fn.atomic import atomic_write_bytes
from s3fn.inference.bundle import locate_bundle
from s3fn.inference.classifier import Classifier
from s3fn.inference.map_model import TileMapModel, halo
from s3fn.models.registry import build_model

if TYPE_CHECKING:
    from torch._inductor.package import AOTICompiledModel

FORMATS = ("onnx", "pt2", "aoti")
TOLERANCE = 1e-4  # the largest difference from predict_map an export may show
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INPUT_NAME, OUTPUT_NAME = "tile", "probabilities"
INPUT_LAYOUT = "(1, B, H, W) float32 raw radiometry in the bundle's bands"
OUTPUT_LAYOUT = (
    "(1, K, H - h + 1, W - w + 1) float32 class probabilities of the windows wholly inside "
    "the tile; output (r, c) is the pixel at input (r + top, c + left); NaN at no-data pixels"
)
MAX_SIDE = 1 << 16  # the largest tile side a dynamic export accepts
# The instruction set of an AOTInductor package's own kernels (inductor's cpp.march) and the
# width of their vector code (cpp.simdlen; 0: scalar, inductor has no 128-bit x86 vector
# code). The fused s3fn ops and ATen pick theirs when they run, whatever this says.
MARCHES: dict[str, int | None] = {
    "x86-64": 0,  # every x86-64 CPU
    "x86-64-v2": 0,  # SSE4.2, POPCNT: CPUs since 2009
    "x86-64-v3": 256,  # AVX2, FMA: CPUs since 2013 (Haswell, Zen)
    "x86-64-v4": 512,  # AVX-512
    "native": None,  # this machine's: may not run on another CPU
}
DEFAULT_MARCH = "x86-64-v3" if platform.machine() in ("x86_64", "AMD64") else "native"


class ExportError(Exception):
    """An export that failed or did not match `predict_map`; nothing was written for it."""


class PackageError(Exception):
    """An AOTInductor package this process cannot run: not one `export` wrote, or compiled
    with another torch version (its kernels are built against that torch's C++ library)."""


def export(
    bundle: str | os.PathLike | Classifier,
    fmt: str,
    out: str | os.PathLike,
    *,
    tile: int | None = None,
    check_tile: int = 64,
    march: str | None = None,
    device: str = "cpu",
) -> Path:
    """Write the map model of `bundle` (a bundle or run folder, or a `Classifier`) to `out`
    as `fmt` ("onnx", "pt2" or "aoti"), and its description to `<out>.json`; returns `out`.

    H and W are dynamic unless `tile` fixes the output at `tile` x `tile` pixels; a dynamic
    output is at least 2 x 2 (torch.export specialises sizes that may be 1). ONNX runs the
    3D-CNN's dense pass by dilated convolutions on standard ops: any size. A .pt2 keeps the
    fused `s3fn` ops, whose shift-and-stitch pass pads phase grids to the pooling stride,
    which torch.export can only trace for sizes on that grid: a dynamic .pt2's output sides
    must be multiples of the model's `dense_stride` (4 with the paper's two pools, else 1),
    at least twice it (other sizes raise); a fixed `tile` has no such limit. The sidecar
    records which. "aoti" compiles the .pt2's program with AOTInductor (slow: tens of
    seconds) for `device` ("cpu" or "cuda"), its kernels for the instruction set `march` (one
    of `MARCHES`; default `DEFAULT_MARCH`, portable). The export is compared with
    `predict_map` on a seeded `check_tile` x `check_tile` tile (plus halo; the fixed tile
    where `tile` is given) and refused, leaving no file, where they differ by more than
    `TOLERANCE`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export: format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()
    if tile is not None and tile < 1:
        raise ValueError(f"export: tile={tile}; expected a positive tile side (pixels mapped)")
    if fmt != "aoti" and (march is not None or device != "cpu"):
        raise ValueError(f"export: march and device apply to aoti packages, not to {fmt}")
    march = _check_march(march)
    if device not in ("cpu", "cuda"):
        raise ValueError(f"export: device={device!r}; expected cpu or cuda")
    classifier = bundle if isinstance(bundle, Classifier) else _load(bundle)
    out = Path(out)
    # A frozen copy: the graph then runs without autograd whatever mode its caller is in (the
    # fused dense pass writes into views, which autograd refuses).
    model = _onnx_model(classifier.model) if fmt == "onnx" else copy.deepcopy(classifier.model)
    model.to(device).requires_grad_(False)
    map_model = TileMapModel(
        model, classifier.preprocessor, classifier.window, dilated=fmt == "onnx"
    ).to(device)
    shape = _TileShape(classifier.window, 1 if fmt == "onnx" else model.dense_stride, tile)
    side = shape.check_side(check_tile)
    check = _check_cube(classifier, side)
    top, left, _, _ = halo(classifier.window)
    expected = classifier.predict_map(check, return_probabilities=True)[1]
    expected = expected[top : top + side, left : left + side].transpose(2, 0, 1)[None]
    scratch = _scratch_file(out)
    metadata = _package_metadata(classifier, shape, march)
    try:
        try:
            with torch.no_grad(), _no_tf32():
                actual = _write(map_model.eval(), fmt, scratch, shape, check, march, metadata)
        except Exception as exc:
            lines = str(exc).strip().splitlines() or [""]
            raise ExportError(
                f"{out}: {fmt} export failed ({type(exc).__name__}: {lines[0]})"
            ) from exc
        difference = max_difference(actual, expected)
        if not difference <= TOLERANCE:
            raise ExportError(
                f"{out}: the exported {fmt} model differs from predict_map by {difference:.3g} "
                f"on a {side}x{side} check tile (tolerance {TOLERANCE:g}); nothing was written"
            )
        os.replace(scratch, out)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    sidecar = _sidecar(classifier, fmt, out, shape, side, difference)
    if fmt == "aoti":
        sidecar["march"], sidecar["device"] = march, device
        sidecar["cpu_isa"] = package_metadata(out).get("AOTI_CPU_ISA")
        sidecar["metadata"] = metadata
    atomic_write_bytes(sidecar_path(out), (json.dumps(sidecar, indent=1) + "\n").encode())
    return out


def load_exported(path: str | os.PathLike) -> torch.export.ExportedProgram:
    """A .pt2 written by `export`, loaded after registering the s3fn ops its graph calls;
    call it as `load_exported(path).module()(tile)`. An AOTInductor package (also a .pt2) is
    refused with a pointer to `load_aoti`, not torch.export's deserialisation error."""
    import s3fn.ops  # noqa: F401  (registers torch.ops.s3fn.*)

    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/data/aotinductor/" in name for name in archive.namelist()):
                raise PackageError(
                    f"{path}: an AOTInductor package, not a torch.export program; "
                    "load it with load_aoti"
                )
    return torch.export.load(path)


def load_aoti(path: str | os.PathLike) -> CompiledMapModel:
    """An AOTInductor package written by `export(..., "aoti", ...)`, loaded after registering
    the s3fn ops it calls by name; call it as `load_aoti(path)(tile)`. A package compiled with
    another torch version is refused in one line naming both: its kernels are built against
    that torch's C++ library."""
    path = Path(path)
    metadata = package_metadata(path)
    made_with = metadata.get("s3fn_torch_version")
    if made_with is None:
        raise PackageError(
            f"{path}: not an s3fn AOTInductor package (no s3fn_torch_version in its metadata); "
            "write one with `s3fn export --format aoti`"
        )
    if made_with != torch.__version__:
        raise PackageError(
            f"{path}: compiled with torch {made_with}, but this is torch {torch.__version__}; "
            "export the bundle again with this torch (`s3fn export --format aoti`)"
        )
    load_extension()
    with _portable_isa_accepted():
        return CompiledMapModel(torch._inductor.aoti_load_package(str(path)), metadata)


class CompiledMapModel:
    """A loaded AOTInductor package of the map model: `model(tile)` gives the probabilities of
    a (1, B, H, W) float32 tile. The tile is checked against the package's metadata first:
    compiled code trusts its input's shape, and a tile off the package's grid would give a
    wrongly sized output without an error."""

    def __init__(self, compiled: AOTICompiledModel, metadata: dict[str, str]) -> None:
        self.compiled, self.metadata = compiled, metadata
        self.bands = int(metadata["s3fn_bands"])
        top, left, bottom, right = (int(side) for side in metadata["s3fn_halo"].split())
        self.halo = (top + bottom, left + right)
        self.multiple = int(metadata["s3fn_output_multiple"])
        self.min_output = int(metadata["s3fn_min_output"])
        self.fixed = metadata["s3fn_tile"] == "fixed"

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        """(1, K, H - h + 1, W - w + 1) probabilities of `tile`, NaN at no-data pixels."""
        outputs = [size - halo for size, halo in zip(tile.shape[2:], self.halo, strict=False)]
        fits = tile.ndim == 4 and tuple(tile.shape[:2]) == (1, self.bands)
        fits = fits and tile.dtype == torch.float32 and all(map(self._on_grid, outputs))
        if not fits:
            grid = (
                f"{self.min_output}"
                if self.fixed
                else f"a multiple of {self.multiple}, at least {self.min_output}"
            )
            raise ValueError(
                f"tile {tuple(tile.shape)} {tile.dtype}: expected (1, {self.bands}, H, W) "
                f"float32 with H - {self.halo[0]} and W - {self.halo[1]} (the outputs) {grid}"
            )
        return self.compiled(tile)

    def _on_grid(self, outputs: int) -> bool:
        if self.fixed:
            return outputs == self.min_output
        return outputs >= self.min_output and outputs % self.multiple == 0


def package_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata an AOTInductor package carries, read without loading its compiled code:
    inductor's AOTI_* keys and, from `export`, all strings: `s3fn_version`,
    `s3fn_torch_version` (the torch that compiled it), `s3fn_bands`, `s3fn_halo` ("top left
    bottom right"), `s3fn_tile` ("dynamic" or "fixed"), `s3fn_output_multiple` and
    `s3fn_min_output` (output sides it takes: multiples of the one, at least the other; both
    the side of a fixed tile) and `s3fn_march` (the instruction set it was compiled for)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such AOTInductor package")
    try:
        return dict(
            torch._C._aoti.AOTIModelPackageLoader.load_metadata_from_package(str(path), "model")
        )
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise PackageError(f"{path}: not an AOTInductor package ({first})") from None


def sidecar_path(out: str | os.PathLike) -> Path:
    """Where the description of the artefact `out` goes: `<out>.json`."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def max_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """The largest absolute difference; infinite where the shapes or the NaN pixels differ."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return float("inf")
    missing = np.isnan(expected)
    if (np.isnan(actual) != missing).any():
        return float("inf")
    return float(np.abs(actual[~missing] - expected[~missing]).max(initial=0.0))


class _TileShape:
    """The tiles an export takes: fixed (`tile` x `tile` output pixels) or dynamic, output
    sides then multiples of `multiple` and at least `min_output`."""

    def __init__(self, window: tuple[int, int], multiple: int, tile: int | None) -> None:
        self.window, self.multiple, self.fixed = window, multiple, tile
        # torch.export specialises a size that may be 1, hence two grid steps at least.
        self.min_output = 2 * multiple

    def check_side(self, check_tile: int) -> int:
        """The output side of the check tile: the fixed tile, or `check_tile` where it fits."""
        if self.fixed is not None:
            return self.fixed
        if check_tile < self.min_output or check_tile % self.multiple:
            raise ValueError(
                f"export: check_tile={check_tile}; expected a multiple of {self.multiple}, "
                f">= {self.min_output}"
            )
        return check_tile

    def example(self, bands: int) -> torch.Tensor:
        """A tile to trace with: the fixed one, or unequal dynamic sides (no duck sizing)."""
        h, w = self.window
        rows = self.fixed or 4 * self.multiple
        steps = (rows + self.multiple, rows + 2 * self.multiple)
        cols = self.fixed or next(c for c in steps if c + w != rows + h)
        return torch.zeros(1, bands, rows + h - 1, cols + w - 1)

    def dynamic_shapes(self) -> dict[str, Any] | None:
        """torch.export's `dynamic_shapes` for the input tile (None when fixed)."""
        if self.fixed is not None:
            return None
        h, w = self.window
        m = self.multiple
        if m == 1:
            height = torch.export.Dim("height", min=h - 1 + self.min_output, max=MAX_SIDE)
            width = torch.export.Dim("width", min=w - 1 + self.min_output, max=MAX_SIDE)
        else:
            rows = torch.export.Dim("row_steps", min=2, max=MAX_SIDE // m)
            cols = torch.export.Dim("col_steps", min=2, max=MAX_SIDE // m)
            height, width = m * rows + h - 1, m * cols + w - 1
        return {INPUT_NAME: {2: height, 3: width}}

    def describe(self) -> dict[str, Any]:
        """The sidecar's `tile` field."""
        if self.fixed is not None:
            return {"dynamic": False, "output": [self.fixed, self.fixed]}
        return {
            "dynamic": True,
            "output_multiple": self.multiple,
            "min_output": self.min_output,
            "max_input": MAX_SIDE,
        }


def _check_march(march: str | None) -> str:
    """The instruction set to compile for: `march`, or the default; x86 names on x86 only."""
    march = DEFAULT_MARCH if march is None else march
    if march not in MARCHES:
        raise ValueError(f"export: march={march!r}; expected one of {', '.join(MARCHES)}")
    if march.startswith("x86-64") and platform.machine() not in ("x86_64", "AMD64"):
        raise ValueError(f"export: march={march} is for x86-64; this is {platform.machine()}")
    return march


def _load(bundle: str | os.PathLike) -> Classifier:
    return Classifier.load(locate_bundle(bundle)[0])


def _require_onnx() -> None:
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"export to ONNX needs {', '.join(ONNX_PACKAGES)} (missing: {', '.join(missing)}); "
            "install them with `pip install s3fn[export]`"
        )


def _onnx_model(model: nn.Module) -> nn.Module:
    """The same model on the ops' plain PyTorch references, which ONNX has standard ops for."""
    embeddings = getattr(model, "class_embeddings", None)
    rebuilt = build_model(model.config(), class_embeddings=embeddings, use_fused_ops=False)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt.eval()


def _check_cube(classifier: Classifier, side: int) -> np.ndarray:
    """A seeded tile of `side` x `side` pixels plus halo, values drawn around the training
    mean with its spread, and one no-data pixel in the middle."""
    preprocessor = classifier.preprocessor
    h, w = classifier.window
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((side + h - 1, side + w - 1, preprocessor.n_bands))
    cube = (preprocessor.mean + preprocessor.scale * noise).astype(np.float32)
    cube[cube.shape[0] // 2, cube.shape[1] // 2] = np.nan
    return cube


def _scratch_file(out: Path) -> Path:
    """An empty file beside `out` to export into, renamed to `out` once checked."""
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; expected the path of the file to write")
    scratch = out.with_name(f".{out.name}.{os.getpid()}.partial{out.suffix}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch.touch()
    except OSError as exc:
        raise ExportError(
            f"{out.parent}: cannot write the export there ({exc.strerror or exc})"
        ) from None
    return scratch


def _write(
    map_model: TileMapModel,
    fmt: str,
    path: Path,
    shape: _TileShape,
    check: np.ndarray,
    march: str,
    metadata: dict[str, str],
) -> np.ndarray:
    """Export `map_model` to `path`, load it back, and run it on the check cube."""
    device = map_model.weight.device
    example = shape.example(map_model.n_bands).to(device)
    tile = torch.from_numpy(np.ascontiguousarray(check.transpose(2, 0, 1)[None])).to(device)
    if fmt in ("pt2", "aoti"):
        program = torch.export.export(map_model, (example,), dynamic_shapes=shape.dynamic_shapes())
    if fmt == "pt2":
        torch.export.save(program, path)
        return load_exported(path).module()(tile).cpu().numpy()
    if fmt == "aoti":
        configs = {
            "cpp.march": None if march == "native" else march,
            "cpp.simdlen": MARCHES[march],
            "aot_inductor.metadata": metadata,
        }
        # Written through a file object, the package's folders are named "archive", not
        # after the scratch file.
        with path.open("wb") as package:
            torch._inductor.aoti_compile_and_package(
                program, package_path=package, inductor_configs=configs
            )
        return load_aoti(path)(tile).cpu().numpy()
    with _quiet():
        torch.onnx.export(
            map_model,
            (example,),
            str(path),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shape.dynamic_shapes(),
            external_data=False,
            verbose=False,
        )
    return _run_onnx(path, tile.numpy())


def _run_onnx(path: Path, tile: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: tile})[0]


def _package_metadata(classifier: Classifier, shape: _TileShape, march: str) -> dict[str, str]:
    """What an AOTInductor package says of itself (the s3fn_* keys of `package_metadata`)."""
    described = shape.describe()
    fixed = shape.fixed
    return {
        "s3fn_version": __version__,
        "s3fn_torch_version": torch.__version__,
        "s3fn_bands": str(classifier.preprocessor.n_bands),
        "s3fn_halo": " ".join(str(side) for side in halo(classifier.window)),
        "s3fn_tile": "dynamic" if described["dynamic"] else "fixed",
        "s3fn_output_multiple": str(fixed or shape.multiple),
        "s3fn_min_output": str(fixed or shape.min_output),
        "s3fn_march": march,
    }


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """cuDNN convolutions in float32, not TF32, while a CUDA package is checked against
    predict_map: TF32 alone can differ by more than `TOLERANCE`."""
    allowed = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = allowed


@contextlib.contextmanager
def _portable_isa_accepted() -> Iterator[None]:
    """Loading a package compiled for a narrower instruction set than this CPU's widest (the
    portable default) logs a "Device information mismatch for AOTI_CPU_ISA" warning; that
    is by design, so it is dropped. Other mismatches are still logged."""
    logger = logging.getLogger("torch.export.pt2_archive._package")

    def keep(record: logging.LogRecord) -> bool:
        return "AOTI_CPU_ISA" not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The ONNX exporter's progress lines, warnings and log records, kept off the output."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _sidecar(
    classifier: Classifier, fmt: str, out: Path, shape: _TileShape, side: int, difference: float
) -> dict[str, Any]:
    preprocessor = classifier.preprocessor
    top, left, bottom, right = halo(classifier.window)
    description: dict[str, Any] = {
        "format": fmt,
        "file": out.name,
        "kind": classifier.kind,
        "class_names": classifier.class_names,
        "bands": preprocessor.n_bands,
        "band_centres": _listed(preprocessor.wavelengths),
        "band_widths": _listed(preprocessor.fwhm),
        "window": list(classifier.window),
        "halo": {"top": top, "left": left, "bottom": bottom, "right": right},
        "input": INPUT_LAYOUT,
        "input_name": INPUT_NAME,
        "output": OUTPUT_LAYOUT,
        "output_name": OUTPUT_NAME,
        "tile": shape.describe(),
        "no_data": "a pixel with a NaN band: NaN probabilities; windows reaching it see the "
        "training mean there",
        "voting": None,
        "max_abs_diff": difference,
        "check_tile": [side, side],
        "tolerance": TOLERANCE,
        "s3fn_version": __version__,
        "torch_version": torch.__version__,
    }
    if classifier.kind == "object":
        description["voting"] = {
            "method": classifier.voting,
            "n_windows": classifier.n_windows,
            "mask_threshold": classifier.mask_threshold,
            "seed": classifier.seed,
            "how": "predict_image draws n_windows windows wholly inside the object mask (band "
            "sum > mask_threshold) and votes over their probabilities: a whole image given "
            "as the tile, without halo, has window (r, c)'s probabilities at output (r, c)",
        }
    return description


def _listed(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]
