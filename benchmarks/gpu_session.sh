#!/usr/bin/env bash
# The GPU checks of issue 7 in a few commands, for a session that is lent a GPU machine
# (the `device` tool runs a command in the repository root there, with $OUT to bring
# files back). Each stage is one device command, well inside its 10-minute limit:
#
#   bash benchmarks/gpu_session.sh test         # build the CUDA extension in place, op tests
#   bash benchmarks/gpu_session.sh bench        # float32 CUDA benchmarks
#   bash benchmarks/gpu_session.sh bench-bf16   # bfloat16 CUDA benchmarks
#   bash benchmarks/gpu_session.sh export       # the exported map model on the GPU (issue 19)
#
# Arguments after a bench stage go to benchmarks.run (e.g. `--only block` to split the cases
# over two commands when max-autotune compiles run long). The machine's own python3 (with
# its CUDA torch) is used, no virtual environment: the ops, models and benchmarks need none
# of the data packages. Logs and results JSON go to $OUT, or to benchmarks/results/ where
# $OUT is unset; copy the JSON files into benchmarks/results/ here and commit them.
#
# The export stage runs benchmarks.export --device cuda: predict_map, the AOTInductor package
# compiled for CUDA (from Python, and from the C++ host where cmake is found) and ONNX Runtime's
# CUDA provider, on one scene. The inference stack needs packages that machine lacks: carry
# them as wheels in .whl/ (see the device README) and they are installed first: spectral,
# rasterio (+ affine, attrs, certifi, click, click-plugins, cligj, pyparsing) for s3fn at all;
# onnx, onnxscript, onnx-ir, ml_dtypes, protobuf and onnxruntime-gpu for the ONNX Runtime path;
# cmake for the C++ host. A path whose packages are missing is recorded as skipped.
set -uo pipefail

stage="${1:?usage: gpu_session.sh test|bench|bench-bf16|export [benchmarks.run arguments]}"
shift
out="${OUT:-benchmarks/results}"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$out"

# The ops library with its CUDA kernels, and s3fn._C, built in place.
build_cuda() {
  S3FN_FORCE_CUDA=1 MAX_JOBS="$(nproc)" "$py" setup.py build_ext --inplace >"$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log"; exit 1; }
}

case "$stage" in
  test)
    nvidia-smi >"$out/nvidia-smi.txt" 2>&1
    build_cuda
    "$py" -m s3fn info
    "$py" -m pytest -q -p no:cacheprovider tests/test_ops_conv3d_block.py tests/test_ops_cosine.py \
      tests/test_ops_errors.py tests/test_ops_compile.py 2>&1 | tee "$out/tests.log"
    ;;
  bench | bench-bf16)
    dtype=float32
    [[ "$stage" == bench-bf16 ]] && dtype=bfloat16
    # The file name benchmarks.run would pick: cuda-<gpu name>-<cores>c.
    name="$("$py" -c 'import torch; from benchmarks.run import machine_info, machine_name
print(machine_name(machine_info(torch.device("cuda"))))')" || exit 1
    [[ "$dtype" == float32 ]] || name="$name-$dtype"
    "$py" -m benchmarks.run --device cuda --dtype "$dtype" "$@" --out "$out/$name.json" 2>&1 \
      | tee "$out/bench-$dtype.log"
    ;;
  export)
    if compgen -G ".whl/*.whl" >/dev/null; then
      "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
      export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PATH="/tmp/site/bin:$PATH"
    fi
    build_cuda
    "$py" -m s3fn info
    "$py" -m benchmarks.export --device cuda "$@" --out "$out/export-cuda.json" 2>&1 \
      | tee "$out/bench-export.log"
    ;;
  *)
    echo "gpu_session.sh: unknown stage '$stage'; expected test, bench, bench-bf16 or export" >&2
    exit 2
    ;;
esac
