"""Build the Cython kernels, with OpenMP when the compiler supports it.

Like scikit-learn, we try to compile and link a tiny OpenMP program first. If that fails
(for example Apple clang without libomp), the kernels are built serially and a warning is
printed; ``cyconv.openmp_enabled()`` tells which build is installed.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP_TEST = textwrap.dedent("""
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
""")


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or None if the compiler refuses them."""
    if os.environ.get("CYCONV_DISABLE_OPENMP"):
        return None
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    flags = ["-fopenmp"]
    tmp = tempfile.mkdtemp()
    try:
        source = os.path.join(tmp, "openmp_test.c")
        with open(source, "w") as handle:
            handle.write(OPENMP_TEST)
        result = subprocess.run(compiler + flags + [source, "-o", os.path.join(tmp, "a.out")],
                                capture_output=True)
        if result.returncode == 0:
            return flags, flags
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


omp = openmp_flags()
if omp is None:
    sys.stderr.write("\n*** cyconv: no OpenMP (the C compiler refused -fopenmp, or "
                     "CYCONV_DISABLE_OPENMP is set); building the serial kernels (correct, but "
                     "single-threaded). ***\n\n")
    compile_args, link_args = [], []
else:
    compile_args, link_args = omp


def native_flags():
    """-march=native when the compiler takes it (the kernels are built on the machine that
    runs them: AVX2/FMA vectors where the CPU has them), unless CYCONV_NATIVE=0."""
    if os.environ.get("CYCONV_NATIVE", "1") == "0":
        return []
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    tmp = tempfile.mkdtemp()
    try:
        source = os.path.join(tmp, "native_test.c")
        with open(source, "w") as handle:
            handle.write("int main(void) { return 0; }\n")
        result = subprocess.run(compiler + ["-march=native", source, "-o", os.path.join(tmp, "a.out")],
                                capture_output=True)
        return ["-march=native"] if result.returncode == 0 else []
    except OSError:
        return []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


compile_args = ["-O3"] + native_flags() + compile_args
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]

extensions = [
    Extension(f"cyconv.kernels.{name}", [f"cyconv/kernels/{name}.pyx"],
              include_dirs=[np.get_include()], define_macros=macros,
              extra_compile_args=compile_args, extra_link_args=link_args)
    for name in ("_parallel", "_conv_direct", "_conv_blocked", "_conv_winograd", "_im2col", "_pool",
                 "_elementwise")
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
