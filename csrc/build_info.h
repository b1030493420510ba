// What the ops library libs3fn_ops.so was compiled with. A plain C entry point,
// so that the Python module s3fn._C (for `s3fn info`) and C++ hosts can ask the
// library itself instead of trusting a separate record.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

struct S3fnBuildInfo {
  int built_with_cuda;      // 1 when the CUDA kernels are in the library
  const char* cuda_status;  // "built", or why they are not
  const char* cuda_archs;   // "80;90"; empty without CUDA
  const char* built_torch;  // torch.__version__ of the build
};

__attribute__((visibility("default"))) const struct S3fnBuildInfo* s3fn_build_info(void);

#ifdef __cplusplus
}
#endif
