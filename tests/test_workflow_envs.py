"""The conda environments of the rules (`--sdm conda`) pin what the installer pins."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO

ENVS = REPO / "envs"
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)$")


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"not an exact pin: {line!r}"
        pins[match[1].lower()] = match[2]
    return pins


def _installer() -> dict[str, str]:
    return _pins((ENVS / "requirements.txt").read_text().splitlines())


def _env_pins(name: str) -> dict[str, str]:
    env = yaml.safe_load((ENVS / name).read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert len(pip) == 1, f"{name}: one pip section"
    return _pins(pip[0])


def _rule_envs() -> set[str]:
    found = set()
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        found |= set(re.findall(r'"\.\./\.\./envs/([\w.-]+\.yaml)"', path.read_text()))
    return found


def test_every_rule_env_exists_and_pins_the_installers_versions():
    installer = _installer()
    envs = _rule_envs()
    assert envs == {"data.yaml", "admin.yaml"}
    for name in envs:
        pins = _env_pins(name)
        assert pins, name
        for package, version in pins.items():
            assert installer.get(package) == version, f"{name}: {package}=={version}"


def test_envs_have_the_installers_python():
    import sys

    want = f"python={sys.version_info.major}.{sys.version_info.minor}"
    for name in _rule_envs():
        deps = yaml.safe_load((ENVS / name).read_text())["dependencies"]
        assert want in deps, f"{name}: {want}"


def test_admin_env_has_the_whole_runtime_and_fairseq():
    """Training, decoding and the report need every runtime pin of the installer (the
    development tools aside); fairseq-fixed is built by the post-deploy script."""
    dev_tools = {
        "snakemake",
        "snakemake-executor-plugin-slurm",
        "pytest",
        "pytest-xdist",
        "snakefmt",
        "ruff",
    }
    runtime = {k: v for k, v in _installer().items() if k not in dev_tools}
    assert _env_pins("admin.yaml") == runtime
    fairseq = _pins((ENVS / "requirements-fairseq.txt").read_text().splitlines())
    script = (ENVS / "admin.post-deploy.sh").read_text()
    for package, version in fairseq.items():
        assert f'"{package}=={version}"' in script
    assert "--no-build-isolation --no-deps" in script


def test_data_env_has_what_the_data_steps_import():
    pins = _env_pins("data.yaml")
    assert {"sacremoses", "subword-nmt", "regex", "tqdm"} <= pins.keys()
    assert "torch" not in pins  # the data steps never import it


def test_every_rule_env_installs_the_workflows_own_package():
    """Both environments' post-deploy scripts install this package from the workflow's
    folder (ADMIN_WORKFLOW_ROOT, set by workflow/rules/common.smk), so the steps run from
    any working directory and when the workflow is used as a module."""
    for name in _rule_envs():
        script = (ENVS / name.replace(".yaml", ".post-deploy.sh")).read_text()
        assert '"${ADMIN_WORKFLOW_ROOT:?' in script and "/envs/install-admin.sh" in script, name
    assert "setuptools" in _env_pins("data.yaml")  # install-admin.sh builds without isolation


def test_install_admin_installs_the_package_into_a_fresh_environment(tmp_path):
    """No conda here: the package install of the post-deploy scripts, run in a fresh
    virtualenv as Snakemake runs it in a new conda environment (its Python first on PATH)."""
    import subprocess
    import sys

    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # the environment file's own pin of the build backend (the script builds without
    # isolation)
    setuptools = f"setuptools=={_env_pins('data.yaml')['setuptools']}"
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", setuptools],
                   check=True, timeout=600, capture_output=True)  # fmt: skip
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    script = str(ENVS / "install-admin.sh")
    refused = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "is not this workflow's folder" in refused.stderr
    ok = subprocess.run(["bash", script], env={**env, "ADMIN_WORKFLOW_ROOT": str(REPO)},
                        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import admin.common.variants as m; print(m.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=env,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(venv)), where  # installed, not the checkout on sys.path
