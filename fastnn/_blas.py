"""Finds the CBLAS sgemm of the BLAS that NumPy already uses, and hands its address to
the C core (the C core knows no BLAS: it calls through a function pointer).

Using NumPy's own library adds no dependency and keeps one BLAS thread pool in the
process (a second OpenBLAS, e.g. SciPy's, would fight NumPy's for the cores). The
libraries looked at, in order: the ones NumPy's wheel bundles (scipy-openblas in
``numpy.libs`` or ``numpy/.dylibs``), then every BLAS already mapped into the process
(the MKL, OpenBLAS, BLIS or FlexiBLAS of a conda or distribution NumPy), then, on macOS,
the Accelerate framework. A library of the family ``numpy.show_config(mode="dicts")``
names wins over the others. Only the optimised families below are used: a reference
(netlib) BLAS is slower than fastnn's own kernels, which serve when none is found, as
they do under ``FASTNN_NO_BLAS=1``.

Each family says which sgemm symbols it exports (LP64: 32-bit integers, ILP64: 64-bit)
and how to set and read its thread count, so that ``fastnn.set_num_threads`` limits
whichever BLAS is in use (Accelerate has no such call: ``VECLIB_MAXIMUM_THREADS`` set
before the process starts is its only knob).
"""
import collections
import ctypes
import glob
import os
import sys

ACCELERATE = "/System/Library/Frameworks/Accelerate.framework/Accelerate"


class _Family(collections.namedtuple(
        "_Family", "markers path_keys sgemm set_threads get_threads version")):
    """How to recognise one BLAS family and talk to it.

    markers: symbols only this family exports; path_keys: words in its file names (for
    libraries without a marker); sgemm: (symbol, ilp64) in order of preference, ilp64
    None meaning "ask the library" (see _ilp64); set_threads: (symbol, ctypes integer
    type of its argument); get_threads: symbols returning the thread count; version:
    (symbol, "str" for a char * result or "buffer" for f(char *buf, int len))."""


FAMILIES = {
    "openblas": _Family(
        markers=("scipy_openblas_get_config64_", "scipy_openblas_get_config",
                 "openblas_get_config64_", "openblas_get_config"),
        path_keys=("openblas",),
        sgemm=(("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True),
               ("scipy_cblas_sgemm", False), ("cblas_sgemm", None)),
        set_threads=(("scipy_openblas_set_num_threads64_", ctypes.c_int),
                     ("scipy_openblas_set_num_threads", ctypes.c_int),
                     ("openblas_set_num_threads64_", ctypes.c_int),
                     ("openblas_set_num_threads", ctypes.c_int)),
        get_threads=("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                     "openblas_get_num_threads64_", "openblas_get_num_threads"),
        version=(("scipy_openblas_get_config64_", "str"), ("scipy_openblas_get_config", "str"),
                 ("openblas_get_config64_", "str"), ("openblas_get_config", "str"))),
    "mkl": _Family(
        markers=("MKL_Get_Max_Threads", "MKL_Get_Version_String"),
        path_keys=("mkl",),
        # mkl_rt.2 (MKL 2023+) exports ILP64 entry points beside the LP64 ones
        sgemm=(("cblas_sgemm_64", True), ("cblas_sgemm64_", True), ("cblas_sgemm", None)),
        set_threads=(("MKL_Set_Num_Threads", ctypes.c_int),
                     ("mkl_set_num_threads_local", ctypes.c_int)),
        get_threads=("MKL_Get_Max_Threads",),
        version=(("MKL_Get_Version_String", "buffer"),)),
    "blis": _Family(
        markers=("bli_info_get_version_str",),
        path_keys=("blis",),
        sgemm=(("cblas_sgemm64_", True), ("cblas_sgemm", None)),
        set_threads=(("bli_thread_set_num_threads", ctypes.c_int64),),  # dim_t: 64 bits
        get_threads=("bli_thread_get_num_threads",),
        version=(("bli_info_get_version_str", "str"),)),
    "flexiblas": _Family(
        markers=("flexiblas_get_num_threads",),
        path_keys=("flexiblas",),
        sgemm=(("cblas_sgemm", None),),
        set_threads=(("flexiblas_set_num_threads", ctypes.c_int),),
        get_threads=("flexiblas_get_num_threads",),
        version=()),
    "accelerate": _Family(
        markers=(),
        path_keys=("accelerate", "veclib"),
        # macOS 13.3+: the new LAPACK/BLAS interface, ILP64 flavour; older: LP64
        sgemm=(("cblas_sgemm$NEWLAPACK$ILP64", True), ("cblas_sgemm", False)),
        set_threads=(),
        get_threads=(),
        version=()),
}

# words in the file names of libraries worth opening (the families' path_keys and "blas")
_PATH_KEYS = ("blas",) + tuple(k for f in FAMILIES.values() for k in f.path_keys)

Found = collections.namedtuple("Found", "family path lib symbol ilp64")

_state = {"tried": False, "lib": None, "found": None}


def family_of_name(name):
    """The family of a BLAS name as NumPy's build reports it ("scipy-openblas",
    "openblas64", "mkl-sdl", "accelerate", "blis", ...), or None."""
    name = (name or "").lower()
    for family, spec in FAMILIES.items():
        if any(key in name for key in spec.path_keys):
            return family
    return None


def numpy_blas_name():
    """The BLAS NumPy was built against, as ``numpy.show_config(mode="dicts")`` names it
    (NumPy >= 1.26), or None when NumPy does not say."""
    try:
        import numpy as np
        config = np.show_config(mode="dicts")
        return config["Build Dependencies"]["blas"]["name"] or None
    except Exception:  # older NumPy (no mode=), or a build without the section
        return None


def _numpy_bundled():
    """The BLAS libraries NumPy's wheel ships: numpy.libs (Linux, Windows), numpy/.dylibs
    (macOS), numpy/.libs (older Windows wheels)."""
    import numpy as np
    package = os.path.dirname(os.path.abspath(np.__file__))
    for folder in (os.path.join(os.path.dirname(package), "numpy.libs"),
                   os.path.join(package, ".dylibs"), os.path.join(package, ".libs")):
        for path in sorted(glob.glob(os.path.join(folder, "*"))):
            if any(key in os.path.basename(path).lower() for key in _PATH_KEYS):
                yield path


def _loaded_linux():
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:  # address perms offset device inode [path]
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                paths.add(fields[5].strip())
    return sorted(paths)


def _loaded_macos():
    libc = ctypes.CDLL(None)
    libc._dyld_image_count.restype = ctypes.c_uint32
    libc._dyld_get_image_name.argtypes = [ctypes.c_uint32]
    libc._dyld_get_image_name.restype = ctypes.c_char_p
    names = (libc._dyld_get_image_name(i) for i in range(libc._dyld_image_count()))
    return [os.fsdecode(n) for n in names if n]


def _loaded_windows():
    from ctypes import wintypes
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    psapi = ctypes.WinDLL("psapi", use_last_error=True)
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    psapi.EnumProcessModulesEx.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.HMODULE),
                                           wintypes.DWORD, ctypes.POINTER(wintypes.DWORD),
                                           wintypes.DWORD]
    kernel32.GetModuleFileNameW.argtypes = [wintypes.HMODULE, wintypes.LPWSTR, wintypes.DWORD]
    process = kernel32.GetCurrentProcess()
    count = 1024
    while True:
        modules = (wintypes.HMODULE * count)()
        needed = wintypes.DWORD()
        if not psapi.EnumProcessModulesEx(process, modules, ctypes.sizeof(modules),
                                          ctypes.byref(needed), 3):  # LIST_MODULES_ALL
            return []
        if needed.value <= ctypes.sizeof(modules):
            break
        count = needed.value // ctypes.sizeof(wintypes.HMODULE) + 16
    paths = []
    buffer = ctypes.create_unicode_buffer(32768)
    for module in modules[:needed.value // ctypes.sizeof(wintypes.HMODULE)]:
        if module and kernel32.GetModuleFileNameW(module, buffer, len(buffer)):
            paths.append(buffer.value)
    return paths


def _loaded_libraries():
    """The shared libraries mapped into this process whose names look like a BLAS."""
    lister = {"darwin": _loaded_macos, "win32": _loaded_windows}.get(sys.platform,
                                                                     _loaded_linux)
    try:
        paths = lister()
    except (OSError, AttributeError, ValueError):
        return []
    return [p for p in paths
            if any(key in os.path.basename(p).lower() for key in _PATH_KEYS)]


def _system_fallbacks():
    """Libraries worth opening even when nothing loaded them: Accelerate on macOS."""
    return [ACCELERATE] if sys.platform == "darwin" else []


def _candidates():
    """Library paths in the order they are tried (each once)."""
    seen = set()
    for source in (_numpy_bundled, _loaded_libraries, _system_fallbacks):
        for path in source():
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                yield path


def _open(path):
    """A ctypes handle on the library (the same one when it is already loaded)."""
    return ctypes.CDLL(path)


def _symbol(lib, name):
    try:
        return getattr(lib, name)
    except AttributeError:
        return None


def _identify(lib, path):
    """The family of a library: by a symbol only that family exports, else by its name."""
    for family, spec in FAMILIES.items():
        if any(_symbol(lib, marker) is not None for marker in spec.markers):
            return family
    name = path.lower()  # Accelerate's BLAS: .../vecLib.framework/.../libBLAS.dylib
    for family, spec in FAMILIES.items():
        if not spec.markers and any(key in name for key in spec.path_keys):
            return family
    return None


def _version(lib, family):
    for symbol, kind in FAMILIES[family].version:
        fn = _symbol(lib, symbol)
        if fn is None:
            continue
        if kind == "buffer":
            buffer = ctypes.create_string_buffer(512)
            fn.restype = None
            fn(buffer, ctypes.c_int(len(buffer)))
            text = buffer.value
        else:
            fn.restype = ctypes.c_char_p
            text = fn()
        return text.decode(errors="replace").strip() if text else None
    return None


def _ilp64(lib, family, path):
    """Whether a library's plain ``cblas_sgemm`` takes 64-bit integers."""
    if family == "openblas":  # an ILP64 build without the 64_ suffix says so in its config
        return "USE64BITINT" in (_version(lib, family) or "")
    if family == "mkl":  # mkl_rt: LP64 unless MKL_INTERFACE_LAYER asks for ILP64
        if "ilp64" in os.path.basename(path).lower():
            return True
        return os.environ.get("MKL_INTERFACE_LAYER", "").upper().startswith("ILP64")
    if family == "blis":
        fn = _symbol(lib, "bli_info_get_blas_int_type_size")
        if fn is not None:
            fn.restype = ctypes.c_int
            return fn() == 64
        return False
    if family == "flexiblas":
        return "flexiblas64" in os.path.basename(path).lower()
    return False


def probe(lib, path):
    """What a library offers fastnn: a Found record (family, path, lib, sgemm symbol,
    ilp64), or None when it is no known optimised BLAS or has no CBLAS sgemm."""
    family = _identify(lib, path)
    if family is None:
        return None
    for symbol, ilp64 in FAMILIES[family].sgemm:
        if _symbol(lib, symbol) is not None:
            if ilp64 is None:
                ilp64 = _ilp64(lib, family, path)
            return Found(family, path, lib, symbol, bool(ilp64))
    return None


def discover():
    """The BLAS fastnn should use (a Found record), or None. NumPy's own family first."""
    preferred = family_of_name(numpy_blas_name())
    first = None
    for path in _candidates():
        try:
            lib = _open(path)
        except OSError:
            continue
        found = probe(lib, path)
        if found is None:
            continue
        if preferred is None or found.family == preferred:
            return found
        if first is None:
            first = found
    return first


def _register(found):
    from fastnn import _engine
    fn = _symbol(found.lib, found.symbol)
    _engine.set_cblas_sgemm(ctypes.cast(fn, ctypes.c_void_p).value, found.ilp64)
    _state["found"], _state["lib"] = found, found.lib


def _load():
    _state["tried"] = True
    if os.environ.get("FASTNN_NO_BLAS"):
        return
    found = discover()
    if found is not None:
        _register(found)


def available():
    """True when a BLAS sgemm is registered with the C core."""
    if not _state["tried"]:
        _load()
    return _state["lib"] is not None


def set_num_threads(n):
    """Threads of the BLAS pool (fastnn.set_num_threads checked n). Returns whether the
    library has a call for it (Accelerate has none)."""
    if not available():
        return False
    found = _state["found"]
    for symbol, argtype in FAMILIES[found.family].set_threads:
        fn = _symbol(found.lib, symbol)
        if fn is not None:
            fn(argtype(n))
            return True
    return False


def get_num_threads():
    """The BLAS pool's thread count, or None (no BLAS, or no call to ask it)."""
    if not available():
        return None
    found = _state["found"]
    for symbol in FAMILIES[found.family].get_threads:
        fn = _symbol(found.lib, symbol)
        if fn is not None:
            fn.restype = ctypes.c_int  # BLIS's dim_t is wider: its low half suffices
            threads = int(fn())
            return threads if threads >= 1 else None
    return None


def info():
    """What show_config reports: found, family, library path, sgemm symbol, ilp64, the
    thread count and version string when the library tells them, and NumPy's BLAS."""
    result = {"found": available(), "family": None, "library": None, "symbol": None,
              "ilp64": None, "threads": None, "config": None, "numpy_blas": numpy_blas_name()}
    if os.environ.get("FASTNN_NO_BLAS"):
        result["disabled_by"] = "FASTNN_NO_BLAS"
    found = _state["found"]
    if found is not None:
        result.update(family=found.family, library=found.path, symbol=found.symbol,
                      ilp64=found.ilp64, threads=get_num_threads(),
                      config=_version(found.lib, found.family))
    return result
