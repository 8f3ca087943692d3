"""The addon as a pip package (fiscal_invoice_connector/pyproject.toml, built by whool as OCA addons
are): the wheel holds the addon's own files and nothing of the simulators, declares the Python
libraries the clients need, and installs into a Python where Odoo imports it.

Offline: whool comes from the virtualenv (requirements.txt), pip may not reach any index."""

import hashlib
import os
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ADDON = REPO / "fiscal_invoice_connector"
SIMULATORS = REPO / "simulators" / "fiscal_simulators"
PREFIX = "odoo/addons/fiscal_invoice_connector/"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, **kwargs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(ADDON)])
    [path] = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def test_the_wheel_is_the_oca_style_addon_distribution(wheel, files):
    assert wheel.name.startswith("odoo_addon_fiscal_invoice_connector-19.0.")
    [metadata] = [body for name, body in files.items() if name.endswith(".dist-info/METADATA")]
    headers = HeaderParser().parsestr(metadata.decode())
    assert headers["Name"] == "odoo-addon-fiscal_invoice_connector"
    requires = {line.split(">")[0].split("=")[0].split("<")[0].strip() for line in headers.get_all("Requires-Dist")}
    assert {"requests", "zeep", "python-stdnum", "xmltodict", "odoo"} <= requires


def test_the_wheel_holds_the_addon_files_git_tracks_and_nothing_else(files):
    tracked = _run(["git", "ls-files"], cwd=ADDON).split()
    expected = {PREFIX + name for name in tracked if name != "pyproject.toml"}
    shipped = {name for name in files if ".dist-info/" not in name}
    assert shipped == expected
    assert PREFIX + "__manifest__.py" in shipped
    assert PREFIX + "providers/wsdl/invoicy_recepcao.wsdl" in shipped  # the SOAP client's contract


def test_the_wheel_holds_no_simulator_or_test_server_code(files):
    assert not [name for name in files if "simulator" in name.lower() or name.endswith("_server.py")]
    simulator_sources = {hashlib.sha256(path.read_bytes()).hexdigest() for path in SIMULATORS.rglob("*.py")}
    assert not [name for name, body in files.items() if hashlib.sha256(body).hexdigest() in simulator_sources]
    servers = [
        name
        for name, body in files.items()
        if name.endswith(".py")
        and any(word in body for word in (b"HTTPServer", b"BaseHTTPRequestHandler", b"socketserver"))
    ]
    assert servers == []


def test_pip_installs_the_folder_where_odoo_imports_it(tmp_path):
    # `pip install ./fiscal_invoice_connector` as the README says (without Odoo's own distribution,
    # which is not pip-installed here: --no-deps).
    target = tmp_path / "site"
    _run([*PIP, "install", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target), str(ADDON)])
    assert (target / PREFIX / "__manifest__.py").is_file()
    code = "import odoo.addons.fiscal_invoice_connector.providers.numbers as m; print(m.__file__)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    where = _run([sys.executable, "-c", code], env=env, cwd=tmp_path).strip()
    assert where == str(target / PREFIX / "providers" / "numbers.py")
