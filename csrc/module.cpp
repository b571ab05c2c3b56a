// `import cnnfast._C` loads this shared library, whose static initializers register the ops.
// The module itself has no Python API: everything is reached through torch.ops.cnnfast.
#include <Python.h>

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
