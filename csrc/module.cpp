// The Python module s3fn._C. Importing it loads the operator registrations;
// its attributes tell what this binary was built with (read by `s3fn info`).
#include <Python.h>

#include "s3fn_build_info.h"

static struct PyModuleDef s3fn_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&s3fn_module);
  if (m == nullptr) return nullptr;
  if (PyModule_AddIntConstant(m, "built_with_cuda", S3FN_BUILT_WITH_CUDA) < 0 ||
      PyModule_AddStringConstant(m, "cuda_status", S3FN_CUDA_STATUS) < 0 ||
      PyModule_AddStringConstant(m, "cuda_archs", S3FN_CUDA_ARCHS) < 0 ||
      PyModule_AddStringConstant(m, "built_torch", S3FN_BUILT_TORCH) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
