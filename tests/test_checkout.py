"""Running from a source checkout: `python -m fastnn ...` or `python -c "import fastnn"` at
the checkout's root puts the unbuilt source package first on sys.path. Importing it must
stop with an ImportError that says how to build, never load another installed copy in
its place (an edit to the checkout would be silently ignored). The `fastnn` command
(a console script) does not put the current folder on sys.path."""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import fastnn


def _package_folder():
    return os.path.dirname(os.path.abspath(fastnn.__file__))


def _unbuilt_checkout(tmp_path):
    """A copy of the package without its compiled extension, as a checkout before its
    build, beside a setup.py."""
    checkout = tmp_path / "checkout"
    shutil.copytree(_package_folder(), checkout / "fastnn",
                    ignore=shutil.ignore_patterns("_engine*.so", "_engine*.pyd", "__pycache__",
                                                  "*.c"))
    (checkout / "setup.py").write_text("# the checkout's build script\n")
    return checkout


def _import_in(folder, code="import fastnn", extra_path=None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if extra_path:
        env["PYTHONPATH"] = extra_path
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                          text=True, env=env)


def test_unbuilt_checkout_says_how_to_build(tmp_path):
    checkout = _unbuilt_checkout(tmp_path)
    result = _import_in(checkout)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastnn's compiled extension is not built in "
                           f"{checkout / 'fastnn'}")
    assert "pip install ." in last
    assert "python setup.py build_ext --inplace" in last
    assert "source checkout" in last


def test_unbuilt_checkout_never_loads_another_copy(tmp_path):
    # A built fastnn is importable from elsewhere on sys.path (PYTHONPATH after the
    # current folder): the checkout still refuses instead of borrowing its modules.
    checkout = _unbuilt_checkout(tmp_path)
    built = os.path.dirname(_package_folder())
    assert _import_in(tmp_path, "import fastnn", extra_path=built).returncode == 0
    result = _import_in(checkout, "import fastnn, fastnn._engine; print(fastnn.__file__)",
                        extra_path=built)
    assert result.returncode != 0
    assert "compiled extension is not built" in result.stderr
    assert "Traceback" in result.stderr and result.stdout == ""


def test_package_without_setup_py_has_no_checkout_hint(tmp_path):
    checkout = _unbuilt_checkout(tmp_path)
    (checkout / "setup.py").unlink()
    result = _import_in(checkout)
    assert "compiled extension is not built" in result.stderr
    assert "source checkout" not in result.stderr


def test_a_broken_import_inside_is_not_reported_as_unbuilt(tmp_path):
    # only a missing fastnn._engine is "not built"; another missing module is itself
    checkout = _unbuilt_checkout(tmp_path)
    engine = [p for p in os.listdir(_package_folder())
              if p.startswith("_engine") and p.endswith((".so", ".pyd"))]
    shutil.copy(os.path.join(_package_folder(), engine[0]), checkout / "fastnn")
    (checkout / "fastnn" / "activations.py").write_text("import fastnn_no_such_module\n")
    result = _import_in(checkout)
    assert result.returncode != 0
    assert "No module named 'fastnn_no_such_module'" in result.stderr
    assert "compiled extension is not built" not in result.stderr


def _console_script():
    scripts = sysconfig.get_path("scripts")
    for name in ("fastnn", "fastnn.exe"):
        path = os.path.join(scripts, name)
        if os.path.exists(path):
            return path
    return shutil.which("fastnn")


def test_python_m_fastnn_version_and_help(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastnn", "--version"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"fastnn {fastnn.__version__}"
    out = subprocess.run([sys.executable, "-m", "fastnn", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: python -m fastnn")
    assert "demo" in out and "bench" in out and "--version" in out


def test_console_script_version_and_help(tmp_path):
    script = _console_script()
    if script is None:
        pytest.skip("no `fastnn` console script: fastnn is not pip-installed here")
    import importlib.metadata
    points = importlib.metadata.entry_points()
    scripts = (points.select(group="console_scripts") if hasattr(points, "select")
               else points.get("console_scripts", []))  # Python 3.9
    assert [e.value for e in scripts if e.name == "fastnn"] == ["fastnn.__main__:main"]
    out = subprocess.run([script, "--version"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"fastnn {fastnn.__version__}"
    out = subprocess.run([script, "--help"], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("usage: fastnn ")
    assert "demo" in out and "export" in out


def test_console_script_ignores_the_current_folder(tmp_path):
    # run from an unbuilt checkout's root, the command still imports the installed fastnn
    script = _console_script()
    if script is None:
        pytest.skip("no `fastnn` console script: fastnn is not pip-installed here")
    checkout = _unbuilt_checkout(tmp_path)
    out = subprocess.run([script, "--version"], cwd=checkout, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"fastnn {fastnn.__version__}"
