"""The C core alone: tests/c/test_plan.c builds and trains a plan with no Python (as an
embedder or a C export would), compiled here against csrc/ with the system compiler."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"


@pytest.mark.skipif(sys.platform == "win32", reason="uses a POSIX C compiler driver")
def test_plan_in_plain_c(tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None or not (CSRC / "fastnn.h").exists():
        pytest.skip("needs a C compiler and the csrc/ sources")
    sources = sorted(str(p) for p in list(CSRC.glob("*.c")) + list(CSRC.glob("ops/*.c")))
    exe = tmp_path / "test_plan"
    build = subprocess.run([cc, "-std=c99", "-D_POSIX_C_SOURCE=199309L", "-O1", "-Wall", "-pthread",
                            "-I", str(CSRC), str(ROOT / "tests" / "c" / "test_plan.c"),
                            *sources, "-lm", "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    assert "warning" not in build.stderr, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
