"""A built wheel carries the templates and boards, and works away from the source tree."""

import os
import subprocess
import sys
import zipfile

import pytest

import mcuasc
from mcuasc.resources import boards_dir, templates_dir

from conftest import IN_CI, REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
    )
    (path,) = out.glob("mcuasc-*.whl")
    return path


def test_wheel_contains_templates_and_boards(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "firmware_templates").rglob("*.j2"):
        assert f"mcuasc/_data/firmware_templates/{template.relative_to(REPO / 'firmware_templates')}" in names
    for board in (REPO / "boards").glob("*.yaml"):
        assert f"mcuasc/_data/boards/{board.name}" in names
    assert "mcuasc/data/labels/tau2022.txt" in names  # label sets are package data


def test_unpacked_wheel_renders_the_front_end_outside_the_repo(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import mcuasc, mcuasc.resources as r\n"
        "from mcuasc.frontend import preset\n"
        "from mcuasc.frontend.c_source import render_frontend\n"
        "from mcuasc.boards import load_board\n"
        "assert mcuasc.__file__.startswith(%r), mcuasc.__file__\n"
        "assert str(r.templates_dir()).startswith(%r)\n"
        "from mcuasc.data.tau import load_labels\n"
        "print(len(render_frontend(preset('mobilenetv2'))), load_board('nrf52840').ram_bytes, len(load_labels()))\n" % (str(site), str(site))
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4", "262144", "10"]


@pytest.mark.skipif(not IN_CI, reason="CI installs mcuasc non-editable; a developer's editable install is fine")
def test_ci_tests_the_installed_wheel_not_the_checkout():
    assert "site-packages" in mcuasc.__file__
    assert "_data" in str(templates_dir()) and "_data" in str(boards_dir())
