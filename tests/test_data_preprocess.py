"""z-score + PCA against numpy.linalg, its transforms, and its exact serialisation round trips."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from s3fn.data import Cube, Preprocessor, S3FNDataError


def _pixels(n=3000, bands=10, seed=0, offset=5.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(bands, bands)) * np.linspace(3, 0.5, bands)[:, None]
    return (rng.normal(size=(n, bands)) @ mixing + offset).astype(np.float32)


def _reference(x):
    """Standardise with numpy, eigendecompose the correlation matrix with numpy.linalg."""
    x = x.astype(np.float64)
    z = (x - x.mean(0)) / x.std(0)
    values, vectors = np.linalg.eigh(np.cov(z, rowvar=False, ddof=0))
    return z, values[::-1], vectors[:, ::-1].T


def test_pca_matches_numpy_linalg():
    x = _pixels()
    fitted = Preprocessor.fit(x, n_components=10)
    z, values, vectors = _reference(x)
    np.testing.assert_allclose(fitted.mean, x.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(fitted.scale, x.astype(np.float64).std(0), rtol=1e-5)
    np.testing.assert_allclose(fitted.explained_variance, values, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(fitted.total_variance, values.sum(), rtol=1e-5)
    # Components equal numpy's up to sign; the sign makes each one's largest entry positive.
    signs = np.sign(vectors[np.arange(10), np.abs(vectors).argmax(1)])
    np.testing.assert_allclose(fitted.components, vectors * signs[:, None], atol=1e-4)
    np.testing.assert_allclose(
        fitted.transform_pixels(x), z @ (vectors * signs[:, None]).T, atol=5e-4
    )


def test_variance_fraction_keeps_the_fewest_components_that_reach_it():
    x = _pixels()
    _, values, _ = _reference(x)
    cumulative = np.cumsum(values) / values.sum()
    for fraction in (0.5, 0.9, 0.99, 0.999):
        fitted = Preprocessor.fit(x, variance=fraction)
        assert fitted.n_components == int(np.argmax(cumulative >= fraction)) + 1
        assert fitted.explained_variance_ratio.sum() >= fraction - 1e-9
    assert Preprocessor.fit(x, variance=1.0).n_components == 10


def test_streamed_chunks_equal_one_array():
    x = _pixels(n=5000)
    whole = Preprocessor.fit(x, n_components=4)
    streamed = Preprocessor.fit(
        (x[i : i + 700] for i in range(0, 5000, 700)), n_components=4, chunk_rows=256
    )
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-6)
    np.testing.assert_allclose(streamed.components, whole.components, atol=1e-5)


def test_large_offsets_keep_precision():
    x = _pixels(n=20000, offset=10000.0)
    fitted = Preprocessor.fit(x, n_components=10)
    _, values, _ = _reference(x)
    np.testing.assert_allclose(fitted.explained_variance, values, rtol=1e-3, atol=1e-6)


def test_constant_band_gets_unit_scale():
    x = _pixels(bands=4)
    x[:, 2] = 0.25
    fitted = Preprocessor.fit(x, variance=1.0)
    assert fitted.scale[2] == 1.0
    assert np.isfinite(fitted.transform_pixels(x)).all()


def test_cube_windows_numpy_and_torch_agree():
    x = _pixels(n=6 * 7 * 3, bands=5)
    fitted = Preprocessor.fit(x, n_components=3)
    image = x[: 6 * 7].reshape(6, 7, 5)
    out = fitted.transform_cube(image)
    assert out.shape == (6, 7, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(
        out, fitted.transform_pixels(image.reshape(-1, 5)).reshape(6, 7, 3)
    )
    windows = np.stack([image[:4, :4], image[2:6, 3:7]]).transpose(0, 3, 1, 2)
    from_numpy = fitted.transform_windows(windows)
    assert from_numpy.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(
        from_numpy[1], out[2:6, 3:7].transpose(2, 0, 1), rtol=1e-6, atol=1e-6
    )
    from_torch = fitted.transform_windows(torch.from_numpy(windows))
    assert isinstance(from_torch, torch.Tensor) and from_torch.is_contiguous()
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, rtol=1e-5, atol=1e-5)


def test_json_round_trip_is_exact():
    fitted = Preprocessor.fit(_pixels(), variance=0.99, wavelengths=np.linspace(400, 900, 10))
    text = json.dumps(fitted.to_dict())
    back = Preprocessor.from_dict(json.loads(text))
    for name in ("mean", "scale", "components", "explained_variance", "wavelengths"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fitted, name))
    assert back.total_variance == fitted.total_variance
    x = _pixels(seed=1)
    np.testing.assert_array_equal(back.transform_pixels(x), fitted.transform_pixels(x))


def test_hdf5_round_trip_is_exact(tmp_path):
    fitted = Preprocessor.fit(_pixels(), n_components=3)
    with h5py.File(tmp_path / "p.h5", "w") as handle:
        fitted.to_hdf5(handle.create_group("preprocessing"))
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        back = Preprocessor.from_hdf5(handle["preprocessing"])
    assert back.wavelengths is None
    for name in ("mean", "scale", "components", "explained_variance"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fitted, name))


def test_bad_serialised_forms(tmp_path):
    good = Preprocessor.fit(_pixels(), n_components=2).to_dict()
    with pytest.raises(S3FNDataError, match=r"bundle\.json: format/version is 'x'/1; expected"):
        Preprocessor.from_dict({**good, "format": "x"}, source="bundle.json")
    with pytest.raises(S3FNDataError, match="preprocessor: field 'scale' is missing"):
        Preprocessor.from_dict({k: v for k, v in good.items() if k != "scale"})
    with pytest.raises(
        S3FNDataError, match=r"field 'components' has shape \(2, 9\); expected \(C, 10\)"
    ):
        Preprocessor.from_dict({**good, "components": [row[:9] for row in good["components"]]})
    with pytest.raises(S3FNDataError, match="field 'mean' has NaN or Inf"):
        Preprocessor.from_dict({**good, "mean": [float("nan")] * 10})
    with h5py.File(tmp_path / "p.h5", "w") as handle:
        handle.create_group("preprocessing").attrs["format"] = "s3fn.preprocessor"
    with (
        h5py.File(tmp_path / "p.h5", "r") as handle,
        pytest.raises(
            S3FNDataError, match=r"p\.h5:/preprocessing: format/version is 's3fn.preprocessor'/None"
        ),
    ):
        Preprocessor.from_hdf5(handle["preprocessing"])


def test_bad_fit_and_transform_inputs():
    x = _pixels(bands=4)
    with pytest.raises(S3FNDataError, match=r"n_components=5: expected 1\.\.4"):
        Preprocessor.fit(x, n_components=5)
    with pytest.raises(S3FNDataError, match=r"variance=1\.5: expected a fraction"):
        Preprocessor.fit(x, variance=1.5)
    with pytest.raises(S3FNDataError, match="no pixels were given"):
        Preprocessor.fit([])
    fitted = Preprocessor.fit(x, n_components=2)
    with pytest.raises(
        S3FNDataError, match="pixels have 3 bands; this preprocessor was fitted on 4"
    ):
        fitted.transform_pixels(np.zeros((5, 3), np.float32))
    with pytest.raises(S3FNDataError, match="windows have 5 bands"):
        fitted.transform_windows(np.zeros((1, 5, 2, 2), np.float32))


def test_cube_from_another_sensor_is_refused():
    x = _pixels(bands=3)
    fitted = Preprocessor.fit(x, n_components=2, wavelengths=np.array([500.0, 600.0, 700.0]))
    image = x[:12].reshape(3, 4, 3)
    same = fitted.transform_cube(Cube(image, np.array([500.4, 600.0, 699.6])))
    np.testing.assert_array_equal(same, fitted.transform_cube(image))
    with pytest.raises(
        S3FNDataError, match="cube band 1 is at 650 nm; this preprocessor was fitted"
    ):
        fitted.transform_cube(Cube(image, np.array([500.0, 650.0, 700.0])))
