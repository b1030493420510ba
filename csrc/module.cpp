// The Python module s3fn._C: a thin face of the ops library. It links
// libs3fn_ops.so (found beside it through the rpath $ORIGIN), so importing it
// loads the library, whose static initialisers register the torch.ops.s3fn
// operators once per process. Its attributes are what that library reports it
// was built with (read by `s3fn info`).
#include <Python.h>

#include "build_info.h"

static struct PyModuleDef s3fn_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&s3fn_module);
  if (m == nullptr) return nullptr;
  const S3fnBuildInfo* info = s3fn_build_info();
  if (PyModule_AddIntConstant(m, "built_with_cuda", info->built_with_cuda) < 0 ||
      PyModule_AddStringConstant(m, "cuda_status", info->cuda_status) < 0 ||
      PyModule_AddStringConstant(m, "cuda_archs", info->cuda_archs) < 0 ||
      PyModule_AddStringConstant(m, "built_torch", info->built_torch) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
