// The Python module `dets._C`. Importing it loads this library, whose static
// initialisers register every op with the PyTorch dispatcher
// (torch.ops.dets.*). Nothing else is exported through Python: the ops are
// reached via the dispatcher.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(dets, m) {
  // Schemas live beside their op (csrc/<op>.cpp) as TORCH_LIBRARY_FRAGMENTs.
}

static PyModuleDef dets_c_module = {
    PyModuleDef_HEAD_INIT, "_C",
    "dets compiled kernels; the ops are registered as torch.ops.dets.*", -1,
    nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&dets_c_module); }
