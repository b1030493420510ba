// The library's build facts, baked in by setup.py through s3fn_build_info.h.
#include "build_info.h"

#include "s3fn_build_info.h"

const S3fnBuildInfo* s3fn_build_info() {
  static const S3fnBuildInfo info{S3FN_BUILT_WITH_CUDA, S3FN_CUDA_STATUS, S3FN_CUDA_ARCHS,
                                  S3FN_BUILT_TORCH};
  return &info;
}
