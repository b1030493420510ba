"""read_cube / read_labels: every format, written with the real writers, and every bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io
import spectral.io.envi as envi

from s3fn.data import Cube, S3FNDataError, read_cube, read_labels
from tests.data_helpers import cube, save_mat73


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("byteorder", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint16, np.uint8])
def test_envi_every_interleave_byte_order_and_type(tmp_path, interleave, byteorder, dtype):
    data = (cube(7, 5, 3) * 200).astype(dtype)
    header = tmp_path / "image.hdr"
    envi.save_image(
        str(header),
        data,
        dtype=dtype,
        interleave=interleave,
        byteorder=byteorder,
        metadata={"wavelength": [0.4, 0.5, 0.6], "wavelength units": "Micrometers"},
    )
    assert f"byte order = {byteorder}" in header.read_text()
    result = read_cube(header)
    assert result.data.dtype == np.float32 and result.data.flags.c_contiguous
    assert result.data.flags.writeable  # an in-memory copy, not a view of the file
    np.testing.assert_array_equal(result.data, data.astype(np.float32))
    np.testing.assert_allclose(result.wavelengths, [400.0, 500.0, 600.0])


def test_envi_opened_by_data_file_and_reflectance_scale(tmp_path):
    data = (cube(4, 4, 2) * 10000).astype(np.int16)
    envi.save_image(
        str(tmp_path / "scaled.hdr"),
        data,
        dtype=np.int16,
        metadata={"reflectance scale factor": 10000, "wavelength": [450, 550]},
    )
    result = read_cube(tmp_path / "scaled.img")
    np.testing.assert_allclose(result.data, data / np.float32(10000), rtol=1e-6)
    np.testing.assert_array_equal(result.wavelengths, [450.0, 550.0])


def test_envi_header_named_after_data_file(tmp_path):
    data = cube(3, 4, 2)
    envi.save_image(str(tmp_path / "a.hdr"), data)
    (tmp_path / "a.img").rename(tmp_path / "scene.dat")
    (tmp_path / "a.hdr").rename(tmp_path / "scene.dat.hdr")
    np.testing.assert_array_equal(read_cube(tmp_path / "scene.dat.hdr").data, data)
    np.testing.assert_array_equal(read_cube(tmp_path / "scene.dat").data, data)


def test_mat_v5_cube_wavelengths_and_labels(tmp_path):
    data, labels = cube(5, 6, 3).astype(np.float64), np.arange(30).reshape(5, 6) % 4
    path = tmp_path / "scene.mat"
    scipy.io.savemat(
        path,
        {"indian_pines": data, "wavelengths": [700.0, 800.0, 900.0], "gt": labels.astype(np.uint8)},
    )
    result = read_cube(path)
    np.testing.assert_array_equal(result.data, data.astype(np.float32))
    np.testing.assert_array_equal(result.wavelengths, [700.0, 800.0, 900.0])
    np.testing.assert_array_equal(read_labels(path), labels)
    assert read_labels(path).dtype == np.int64


def test_mat_v73_axes_and_key(tmp_path):
    data, other = cube(5, 6, 3), cube(2, 2, 2, seed=1)
    path = tmp_path / "v73.mat"
    save_mat73(path, {"cube": data, "other": other, "gt": np.eye(5, 6)})
    np.testing.assert_array_equal(read_cube(path, key="cube").data, data)
    np.testing.assert_array_equal(read_cube(path, key="other").data, other)
    np.testing.assert_array_equal(read_labels(path), np.eye(5, 6, dtype=np.int64))


def test_npy_and_npz(tmp_path):
    data = cube()
    np.save(tmp_path / "c.npy", data)
    loaded = read_cube(tmp_path / "c.npy")
    np.testing.assert_array_equal(loaded.data, data)
    loaded.data[0] = 0.0  # writeable, and the file is untouched
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), data)
    np.savez(
        tmp_path / "c.npz",
        data=data.astype(np.float64),
        labels=np.ones((6, 5), np.int32),
        wavelengths=np.array([1.0, 1.1, 1.2, 1.3]),
    )
    result = read_cube(tmp_path / "c.npz")
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_allclose(result.wavelengths, [1000.0, 1100.0, 1200.0, 1300.0])
    np.testing.assert_array_equal(read_labels(tmp_path / "c.npz"), np.ones((6, 5)))


def test_hdf5_key_nested_group_and_wavelength_attribute(tmp_path):
    data = cube()
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("sensor/reflectance", data=data)
        dataset.attrs["wavelengths"] = [2.0, 2.1, 2.2, 2.3]
        dataset.attrs["wavelength_units"] = "micrometers"
        handle.create_dataset("sensor/raw", data=data * 2)
        handle.create_dataset("labels", data=np.zeros((6, 5), np.uint8))
    result = read_cube(path, key="/sensor/reflectance")
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_allclose(result.wavelengths, [2000.0, 2100.0, 2200.0, 2300.0])
    np.testing.assert_array_equal(read_labels(path).shape, (6, 5))


def test_envi_labels_map(tmp_path):
    labels = (np.arange(12).reshape(3, 4) % 3).astype(np.uint8)
    envi.save_image(str(tmp_path / "gt.hdr"), labels[..., None], dtype=np.uint8)
    np.testing.assert_array_equal(read_labels(tmp_path / "gt.hdr"), labels)


def test_float_labels_with_whole_values_are_accepted(tmp_path):
    np.save(tmp_path / "gt.npy", np.array([[0.0, 2.0], [1.0, 3.0]]))
    np.testing.assert_array_equal(read_labels(tmp_path / "gt.npy"), [[0, 2], [1, 3]])


def _envi(tmp_path, data=None, **metadata):
    header = tmp_path / "bad.hdr"
    envi.save_image(str(header), cube(4, 3, 2) if data is None else data, metadata=metadata)
    return header


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.npy: file not found"):
        read_cube(tmp_path / "nothere.npy")


def test_envi_missing_data_file(tmp_path):
    header = _envi(tmp_path)
    (tmp_path / "bad.img").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"bad\.hdr: ENVI data file not found; expected bad"
    ):
        read_cube(header)


@pytest.mark.parametrize("change", [-8, 4])
def test_envi_header_disagrees_with_file_size(tmp_path, change):
    header = _envi(tmp_path)
    data_file = tmp_path / "bad.img"
    raw = data_file.read_bytes()
    data_file.write_bytes(raw[:change] if change < 0 else raw + b"\0" * change)
    expected = (
        rf"bad\.hdr: data file bad\.img has {len(raw) + change} bytes but the header "
        rf"\(lines=4, samples=3, bands=2, data type=4, header offset=0\) needs {len(raw)}"
    )
    with pytest.raises(S3FNDataError, match=expected):
        read_cube(header)


def test_envi_bad_header_fields(tmp_path):
    header = _envi(tmp_path)
    text = header.read_text()
    header.write_text(text.replace("bands = 2", "bands = two"))
    with pytest.raises(
        S3FNDataError, match="header field 'bands' is 'two'; expected a non-negative"
    ):
        read_cube(header)
    header.write_text(text.replace("data type = 4", "data type = 6"))
    with pytest.raises(S3FNDataError, match="'data type' is 6; expected one of"):
        read_cube(header)
    header.write_text("not a header\n")
    with pytest.raises(S3FNDataError, match="not a readable ENVI header"):
        read_cube(header)


def test_envi_wavelength_count_must_match_bands(tmp_path):
    header = _envi(tmp_path, wavelength=[500, 600, 700])
    with pytest.raises(S3FNDataError, match="'wavelength' has 3 values; expected 2, one per band"):
        read_cube(header)


def test_two_dimensional_array_where_a_cube_is_needed(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((145, 145)))
    with pytest.raises(
        S3FNDataError, match=r"flat\.npy: array is 2-D \(145, 145\); expected a 3-D"
    ):
        read_cube(tmp_path / "flat.npy")
    scipy.io.savemat(tmp_path / "gt.mat", {"gt": np.zeros((4, 4))})
    with pytest.raises(S3FNDataError, match=r"gt\.mat: no 3-D array; .* found gt \(4, 4\)"):
        read_cube(tmp_path / "gt.mat")
    with pytest.raises(S3FNDataError, match=r"array 'gt' is 2-D \(4, 4\); expected a 3-D"):
        read_cube(tmp_path / "gt.mat", key="gt")


def test_inf_is_counted_and_located_while_nan_is_no_data(tmp_path):
    data = cube(4, 5, 3)
    data[1, 2, 0] = np.nan
    data[3, 0, 2] = np.inf
    data[2, 4, 1] = np.inf
    np.save(tmp_path / "holes.npy", data)
    with pytest.raises(
        S3FNDataError,
        match=r"holes\.npy: array has 2 Inf values "
        r"\(first at row 2, column 4, band 1\); expected finite values or NaN \(no data\)",
    ):
        read_cube(tmp_path / "holes.npy")
    data[np.isinf(data)] = 0.0
    np.save(tmp_path / "holes.npy", data)
    read = read_cube(tmp_path / "holes.npy").data
    assert np.isnan(read[1, 2]).all() and np.isnan(read).sum() == 3


def test_choice_among_several_arrays(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=cube(), b=cube(seed=1))
    with pytest.raises(
        S3FNDataError, match=r"two\.npz: 2 3-D arrays \(a, b\); pass key= to choose"
    ):
        read_cube(path)
    with pytest.raises(S3FNDataError, match=r"no numeric array named 'c'; expected one of a "):
        read_cube(path, key="c")
    np.testing.assert_array_equal(read_cube(path, key="b").data, cube(seed=1))


def test_unsupported_and_unreadable_files(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(
        S3FNDataError, match=r"photo\.jpg: unsupported format '\.jpg'; expected ENVI"
    ):
        read_cube(tmp_path / "photo.jpg")
    (tmp_path / "photo.tif").write_bytes(b"II*\0")
    with pytest.raises(S3FNDataError, match=r"photo\.tif: not a readable GeoTIFF file"):
        read_cube(tmp_path / "photo.tif")
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(S3FNDataError, match=r"broken\.h5: not a readable HDF5 file"):
        read_cube(tmp_path / "broken.h5")
    (tmp_path / "broken.mat").write_bytes(b"")
    with pytest.raises(S3FNDataError, match=r"broken\.mat: not a MATLAB \.mat file"):
        read_cube(tmp_path / "broken.mat")
    np.save(tmp_path / "c.npy", cube())
    with pytest.raises(S3FNDataError, match=r"\.npy file holds one array; key='x' does not apply"):
        read_cube(tmp_path / "c.npy", key="x")


def test_complex_cube_is_refused(tmp_path):
    np.save(tmp_path / "z.npy", np.ones((2, 2, 2), np.complex64))
    with pytest.raises(S3FNDataError, match="dtype complex64; expected real numbers"):
        read_cube(tmp_path / "z.npy")


def test_bad_label_maps(tmp_path):
    np.save(tmp_path / "frac.npy", np.array([[0.0, 1.5]]))
    with pytest.raises(
        S3FNDataError, match=r"1 non-integer labels \(first 1\.5 at row 0, column 1\)"
    ):
        read_labels(tmp_path / "frac.npy")
    np.save(tmp_path / "neg.npy", np.array([[0, -1]]))
    with pytest.raises(S3FNDataError, match="negative label -1 at row 0, column 1"):
        read_labels(tmp_path / "neg.npy")
    np.save(tmp_path / "cube.npy", cube())
    with pytest.raises(S3FNDataError, match=r"array is 3-D \(6, 5, 4\); expected a 2-D HxW label"):
        read_labels(tmp_path / "cube.npy")
    envi.save_image(str(tmp_path / "multi.hdr"), cube())
    with pytest.raises(S3FNDataError, match="image has 4 bands; expected a 1-band label map"):
        read_labels(tmp_path / "multi.hdr")


def test_cube_checks_its_fields():
    with pytest.raises(S3FNDataError, match="expected HxWxB float32"):
        Cube(np.zeros((2, 2)))
    with pytest.raises(S3FNDataError, match=r"wavelengths has shape \(3,\); expected \(2,\)"):
        Cube(np.zeros((2, 2, 2), np.float32), np.ones(3))
