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
    dev_tools = {"snakemake", "snakemake-executor-plugin-slurm", "pytest", "snakefmt", "ruff"}
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
