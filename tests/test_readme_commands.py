"""Every command quoted in the README exists and accepts the flags shown.

Commands are read from the README's fenced `bash` blocks. For each `python scripts/X.py ...`,
`python -m nanogpt2...` or `accelerate launch ... scripts/X.py ...` line, the script must exist and its
`--help` must list every `--flag` used; `key=value` overrides of scripts/pretrain.py must be valid config
keys, and every `--config` preset quoted must exist and parse.
"""

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nanogpt2.training.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"


def readme_commands() -> list[str]:
    """Shell commands from the README's bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in re.split(r"&&|;", line) if part.strip())
    return commands


def python_invocations() -> list[tuple[str, list[str]]]:
    """(target, arguments) for each command that runs a project script or module."""
    found = []
    for command in readme_commands():
        words = shlex.split(command)
        while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
            words = words[1:]
        if words[:2] == ["accelerate", "launch"]:
            rest = words[2:]
            script = next((w for w in rest if w.endswith(".py")), None)
            if script:
                found.append((script, rest[rest.index(script) + 1:]))
        elif words and words[0] in ("python", "python3"):
            if len(words) > 2 and words[1] == "-m" and words[2].startswith("nanogpt2"):
                found.append((words[2], words[3:]))
            elif len(words) > 1 and words[1].endswith(".py"):
                found.append((words[1], words[2:]))
    return found


@functools.cache
def help_text(target: str) -> str:
    cmd = [sys.executable, "-m", target, "--help"] if not target.endswith(".py") else [sys.executable, target, "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
    assert proc.returncode == 0, f"`{' '.join(cmd)}` failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def test_readme_quotes_the_main_commands():
    targets = {t for t, _ in python_invocations()}
    for needed in ("scripts/quickstart.py", "scripts/prepare_data.py", "scripts/pretrain.py",
                   "scripts/eval_hellaswag.py", "scripts/generate.py", "scripts/plot_run.py"):
        assert needed in targets, f"README does not show {needed}"
    assert "python -m pytest -q tests" in readme_commands()


@pytest.mark.parametrize("target,args", python_invocations(), ids=lambda v: v if isinstance(v, str) else None)
def test_readme_command_exists_and_accepts_its_flags(target, args):
    if target.endswith(".py"):
        assert (REPO_ROOT / target).is_file(), f"README runs {target}, which does not exist"
    text = help_text(target)
    for arg in args:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", text), f"{target} --help does not list {flag}"
    if target == "scripts/pretrain.py":
        preset = args[args.index("--config") + 1] if "--config" in args else None
        if preset:
            assert (REPO_ROOT / preset).is_file(), f"README quotes missing preset {preset}"
        overrides = [a for a in args if "=" in a and not a.startswith("-")]
        load_config(REPO_ROOT / preset if preset else None, overrides)  # raises on an unknown key


def test_readme_configuration_reference_matches_the_dataclasses():
    from nanogpt2.training.config import config_reference_markdown

    block = re.search(r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->", README.read_text(),
                      flags=re.S)
    assert block, "README lacks the configuration reference block"
    assert block.group(1).strip() == config_reference_markdown(), (
        "README's configuration reference is stale: regenerate it with "
        "`python scripts/pretrain.py --help-config --markdown`"
    )
