"""Build the `dets` package and its compiled kernels (`dets._C`).

Environment:
    DETS_WITH_CUDA=0|1        force a CPU-only build (0) or a CUDA build (1, error if impossible).
                              Unset: CUDA kernels are built when torch has CUDA and nvcc is found.
    TORCH_CUDA_ARCH_LIST      GPU architectures to compile for (torch's syntax, e.g. "8.0;9.0+PTX").
                              Unset with no GPU visible: DEFAULT_ARCH_LIST below.
    MAX_JOBS                  parallel compile jobs (ninja).
"""

import glob
import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
# With no GPU to ask: Hopper SASS plus Hopper PTX, which the driver JIT-compiles for newer GPUs.
# Each extra architecture adds a full device pass per .cu file (minutes on a small machine); a
# GPU without compiled kernels is served by the Triton kernels. Set TORCH_CUDA_ARCH_LIST for more.
DEFAULT_ARCH_LIST = "9.0+PTX"


def _cuda_home_from_nvcc():
    """Locate the CUDA install behind the `nvcc` on PATH, following wrapper scripts.

    Some machines put a shell wrapper named nvcc on PATH that `exec`s the real compiler;
    torch's own guess (the parent of PATH's nvcc) is then wrong.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    nvcc = os.path.realpath(nvcc)
    with open(nvcc, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"#!"):
        match = re.search(rb"(/\S+)/bin/nvcc\b", head)
        if match:
            return match.group(1).decode()
    return str(Path(nvcc).parent.parent)


if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ:
    _home = _cuda_home_from_nvcc()
    if _home:
        os.environ["CUDA_HOME"] = _home

import torch  # noqa: E402  (CUDA_HOME must be set before cpp_extension reads it)
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)


def _want_cuda():
    flag = os.environ.get("DETS_WITH_CUDA", "").strip()
    can = torch.version.cuda is not None and CUDA_HOME is not None
    if flag == "0":
        return False
    if flag == "1":
        if torch.version.cuda is None:
            sys.exit("DETS_WITH_CUDA=1 but this torch has no CUDA support (torch.version.cuda is None)")
        if CUDA_HOME is None:
            sys.exit("DETS_WITH_CUDA=1 but no CUDA toolkit was found (no nvcc on PATH, CUDA_HOME unset)")
        return True
    if flag:
        sys.exit(f"DETS_WITH_CUDA must be 0 or 1, got {flag!r}")
    return can


def _arch_list():
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if archs:
        return archs
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        archs = ";".join(f"{major}.{minor}" for major, minor in caps) + "+PTX"
        print(f"dets: TORCH_CUDA_ARCH_LIST not set; compiling for the visible GPUs: {archs}")
    else:
        archs = DEFAULT_ARCH_LIST
        print(f"dets: TORCH_CUDA_ARCH_LIST not set and no GPU visible; compiling for {archs}")
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    return archs


def _extension():
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # -fopenmp, not just -fopenmp-simd: ATen's header-only at::parallel_for runs its body serially
    # unless _OPENMP is defined where it is compiled. Linking libgomp.so.1 resolves to the copy
    # torch has already loaded, so the kernels share torch's thread pool.
    cxx = ["-O3", "-fopenmp"]
    link = ["-fopenmp"]
    define_macros = []
    include_dirs = [str(ROOT / "csrc")]
    if not _want_cuda():
        print("dets: building the CPU kernels only")
        ext = CppExtension(
            "dets._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link, include_dirs=include_dirs
        )
        return ext, ""
    archs = _arch_list()
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    define_macros.append(("DETS_WITH_CUDA", None))
    # Torch's CUDA headers reach for cuSPARSE & co.; pip's CUDA wheels ship them here.
    for site in sys.path:
        extra = Path(site) / "nvidia" / "cu13" / "include"
        if extra.is_dir():
            include_dirs.append(str(extra))
            break
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    ext = CUDAExtension(
        "dets._C",
        sources,
        define_macros=define_macros,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=link,
    )
    return ext, archs


def _write_build_info(archs):
    (ROOT / "dets" / "_build_info.py").write_text(
        '"""Written by setup.py: what the compiled extension holds."""\n\n'
        f"TORCH_VERSION = {torch.__version__!r}\n"
        f"CUDA_VERSION = {torch.version.cuda if archs else None!r}\n"
        f"CUDA_ARCH_LIST = {archs!r}\n"
    )


ext, archs = _extension()
_write_build_info(archs)

setup(
    name="dets",
    version="0.1.0",
    description="Object detection toolbox with hand-written CPU, CUDA and Triton kernels",
    python_requires=">=3.10",
    packages=[*find_packages(include=["dets", "dets.*"]), "dets._kernels"],
    package_dir={"dets._kernels": "kernels"},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
