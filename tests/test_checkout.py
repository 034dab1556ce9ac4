"""Running from a source checkout: `python -m fastnn ...` at the checkout's root puts the
uncompiled source package first on sys.path; it must use the installed build."""
import os
import shutil
import subprocess
import sys

import pytest

import fastnn


def _installed_folder():
    return os.path.dirname(os.path.abspath(fastnn.__file__))


def test_checkout_without_extension_uses_the_installed_build(tmp_path):
    installed = _installed_folder()
    if not os.path.isdir(os.path.join(os.path.dirname(installed), "fastnn")) or \
            os.path.exists(os.path.join(installed, "..", "setup.py")):
        pytest.skip("fastnn is imported from a source tree (editable install), not installed")
    checkout = tmp_path / "fastnn"
    checkout.mkdir()
    shutil.copy(os.path.join(installed, "__init__.py"), checkout / "__init__.py")
    code = ("import fastnn, fastnn._engine as e, os; "
            "print(os.path.dirname(e.__file__)); print(fastnn.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == installed
    assert out[1] == str(checkout / "__init__.py")
    help_text = subprocess.run([sys.executable, "-m", "fastnn", "--help"], cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout
    assert "demo" in help_text and "bench" in help_text


def test_checkout_without_any_build_says_what_to_do(tmp_path):
    checkout = tmp_path / "fastnn"
    checkout.mkdir()
    shutil.copy(os.path.join(_installed_folder(), "__init__.py"), checkout / "__init__.py")
    # only the checkout on the path: no installed build to fall back on
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-S", "-c", "import fastnn"], cwd=tmp_path,
                            capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "compiled extension is not built" in result.stderr
    assert "pip install ." in result.stderr
