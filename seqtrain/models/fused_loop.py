"""The compiled per-step loops of the fused recurrent layers (fused_loop.cpp), built once per install.

In Python each time step of a recurrence costs tens of microseconds of
dispatch for a handful of small operations: at a hidden size of 32 that is the
whole time of a layer. fused_loop.cpp runs a layer's loop over time in C++
(one matrix product and one pass of plain loops per step). It is compiled with
torch's JIT extension builder (g++ and ninja) by `seqtrain build` or on first
training, into $TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions)/<name>,
where the name carries a digest of everything the build depends on (source
text and path, flags, compiler, torch's version and folder, Python's version):
two installs on one machine never share, and so never rebuild over, one
folder. A build always says so in one line. Processes that start together
(test workers, DDP ranks) take turns on a lock, so one builds and the others
load its result. Commands that only run a trained model (`use_prebuilt_only`)
load a finished build but never wait for one: they run nn's kernels instead.
Where it cannot be built (no compiler, no ninja) `compiled_loop()` says so in
one line and returns None, and models/fused.py runs its Python loops: same
numbers, slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from seqtrain.files import file_lock

SOURCE = Path(__file__).with_name("fused_loop.cpp")
NAMESPACE = "seqtrain_fused_loop"  # TORCH_LIBRARY's in fused_loop.cpp
_UNSET = object()
_loop: Any = _UNSET
_may_build = True


def compiled_loop() -> Any | None:
    """torch.ops.seqtrain_fused_loop (building it the first time on this machine), or None where it cannot be built.

    Tried once per process; SEQTRAIN_FUSED_LOOP=python skips it. After `use_prebuilt_only()`, None where it
    is not built yet.
    """
    global _loop
    if _loop is _UNSET:
        _loop = None if os.environ.get("SEQTRAIN_FUSED_LOOP") == "python" else _build_and_load(_may_build)
    return _loop


def use_prebuilt_only() -> None:
    """Load the loop only where it is built already: for commands that run a trained model, whose layers
    fall back to nn's own kernels (same numbers) rather than wait a minute for a compile."""
    global _may_build
    _may_build = False


def build() -> Path:
    """Build the loop now (or find it built) and return its folder; SeqtrainError where it cannot be built."""
    from seqtrain.errors import SeqtrainError

    global _loop
    _loop = _build_and_load(True)
    if _loop is None:
        raise SeqtrainError("the compiled recurrent loop could not be built (see the line above); "
                            "seqtrain still works with its slower Python loop")
    return build_folder()


def compile_flags() -> list[str]:
    """-O3 and the widest vector instructions torch itself uses on this CPU (AVX-512 or AVX2 with FMA).

    The build folder's name carries the flags, so builds for other CPUs sharing a cache stay apart.
    -fno-trapping-math lets the exp's clamps compile to vector selects (nothing here reads FP exception flags).
    -fopenmp where torch's threads are OpenMP's: at::parallel_for is compiled into the caller, and without
    the flag its pragma is ignored and every loop runs on one thread whatever torch.set_num_threads says.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    wide = {
        "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mprefer-vector-width=512"],
        "AVX2": ["-mavx2", "-mfma"],
    }
    openmp = ["-fopenmp"] if "parallel backend: OpenMP" in torch.__config__.parallel_info() else []
    return ["-O3", "-fno-trapping-math", *wide.get(capability, []), *openmp]


def build_name(flags: list[str]) -> str:
    """The extension's name and build folder: one per source text and path, flags, compiler, torch's version and
    folder, and Python's version. build.ninja records the source's and torch's headers' paths, so two installs
    sharing a folder would each see the other's build as stale and rebuild it."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    where = f"{SOURCE.resolve()}|{Path(torch.__file__).resolve().parent}|{os.environ.get('CXX', 'c++')}"
    digest.update(f"{flags}|{torch.__version__}|{sys.version_info[:2]}|{where}".encode())
    return f"{NAMESPACE}_{digest.hexdigest()[:12]}"


def build_folder() -> Path:
    """This install's build folder."""
    from torch.utils import cpp_extension

    return build_root(cpp_extension) / build_name(compile_flags())


def build_root(cpp_extension) -> Path:
    """Where torch keeps JIT-built extensions: $TORCH_EXTENSIONS_DIR, else its default (~/.cache/torch_extensions)."""
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())


def _build_and_load(may_build: bool) -> Any | None:
    try:
        from torch.utils import cpp_extension

        flags = compile_flags()
        name = build_name(flags)
        folder = build_root(cpp_extension) / name
        library = folder / f"{name}.so"
        if not may_build and not library.exists():
            print("seqtrain: the compiled recurrent loop is not built yet, so this command runs nn's kernels "
                  "(`seqtrain build` builds it, about a minute once)", file=sys.stderr, flush=True)
            return None
        with file_lock(folder / "build"), _ninja_on_path(), _quiet(logging.getLogger("torch.utils.cpp_extension")):
            # torch's own lock file, left behind if a build was killed: under our lock nobody else is building
            (folder / "lock").unlink(missing_ok=True)
            built = library.stat().st_mtime_ns if library.exists() else None
            if built is None:
                print(f"seqtrain: compiling the recurrent loop into {folder} (once per install, about a minute)",
                      file=sys.stderr, flush=True)
            cpp_extension.load(name, [str(SOURCE)], extra_cflags=flags,
                               extra_ldflags=[flag for flag in flags if flag == "-fopenmp"], build_directory=str(folder),
                               is_python_module=False, verbose=False)
            if built is not None and library.stat().st_mtime_ns != built:  # ninja found something changed
                print(f"seqtrain: recompiled the recurrent loop in {folder} (its build inputs changed)",
                      file=sys.stderr, flush=True)
        return getattr(torch.ops, NAMESPACE)
    except Exception as error:  # no compiler, no ninja, a failed build: the Python loop still works
        print(f"seqtrain: the compiled recurrent loop is unavailable, using the slower Python loop ({cause(error)})",
              file=sys.stderr, flush=True)
        return None


def cause(error: Exception) -> str:
    """The line of a build failure that says why (a compiler error, a missing program), not the commands around it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if re.search(r"error|not found|no such|required", line, re.IGNORECASE)
              and not line.startswith("Error building extension")]
    return (causes[-1] if causes else lines[0] if lines else type(error).__name__)[:200]


@contextlib.contextmanager
def _ninja_on_path() -> Iterator[None]:
    """PATH with the ninja of this environment's pip package on it, for a venv used without activating it."""
    before = os.environ.get("PATH", "")
    if shutil.which("ninja") is None:
        with contextlib.suppress(ImportError):
            import ninja

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, before])
    try:
        yield
    finally:
        os.environ["PATH"] = before


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Errors only from torch's builder (its warnings span many lines; a failure is reported in one)."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
