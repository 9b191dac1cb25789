"""Every command quoted in the README exists and accepts the flags shown.

Commands are read from the README's fenced `bash` blocks. Each `nanogpt2 VERB ...` line, and each
`accelerate launch` / `torchrun` / `python` line running `scripts/X.py` (which runs a verb), must name
a verb whose parser accepts every `--flag` used; `key=value` overrides of `pretrain` must be valid
config keys, and every `--config` preset quoted must exist and parse.
"""

import re
import shlex
from pathlib import Path

import pytest

from nanogpt2.cli import VERBS, build_parser
from nanogpt2.training import config_reference_markdown, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"


def readme_commands() -> list[str]:
    """Shell commands from the README's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in re.split(r"&&|;", line) if part.strip())
    return commands


def script_verb(script: str) -> str:
    """The verb a `scripts/X.py` shim runs."""
    path = REPO_ROOT / script
    assert path.is_file(), f"README runs {script}, which does not exist"
    found = re.search(r'run_verb\("([\w-]+)"\)', path.read_text())
    assert found, f"{script} is not a shim of a nanogpt2 verb"
    return found.group(1)


def verb_invocations() -> list[tuple[str, list[str]]]:
    """(verb, arguments) for each README command that runs the nanogpt2 command or one of its scripts."""
    found = []
    for command in readme_commands():
        words = shlex.split(command)
        while words and "=" in words[0] and not words[0].startswith("-"):  # VAR=value prefixes
            words = words[1:]
        if words[:1] == ["nanogpt2"] and len(words) > 1:
            found.append((words[1], words[2:]))
        elif words[:1] in (["accelerate"], ["torchrun"], ["python"], ["python3"]):
            script = next((w for w in words if w.startswith("scripts/") and w.endswith(".py")), None)
            if script:
                found.append((script_verb(script), words[words.index(script) + 1:]))
    return found


def test_readme_quotes_the_main_verbs_and_the_test_command():
    verbs = {verb for verb, _ in verb_invocations()}
    for needed in ("quickstart", "prepare", "pretrain", "eval-hellaswag", "generate", "convert", "push", "plot"):
        assert needed in verbs, f"README does not show `nanogpt2 {needed}`"
    assert "python -m pytest -q tests" in readme_commands()


@pytest.mark.parametrize("verb,args", verb_invocations(), ids=lambda v: v if isinstance(v, str) else None)
def test_readme_command_exists_and_accepts_its_flags(verb, args):
    assert verb in VERBS, f"README runs `nanogpt2 {verb}`, which is not a verb ({', '.join(VERBS)})"
    parser = build_parser(verb)
    parser.parse_args([verb, *args])  # exits (fails the test) on an unknown flag or a bad value
    if verb == "pretrain":
        preset = args[args.index("--config") + 1] if "--config" in args else None
        if preset:
            assert (REPO_ROOT / preset).is_file(), f"README quotes missing preset {preset}"
        overrides = [a for a in args if "=" in a and not a.startswith("-")]
        load_config(REPO_ROOT / preset if preset else None, overrides)  # raises on an unknown key


def test_every_verb_help_shows_an_example(capsys):
    for verb in VERBS:
        with pytest.raises(SystemExit) as done:
            build_parser(verb).parse_args([verb, "--help"])
        assert done.value.code == 0
        assert f"nanogpt2 {verb}" in capsys.readouterr().out, f"`nanogpt2 {verb} --help` shows no example"


def test_readme_configuration_reference_matches_the_dataclasses():
    block = re.search(r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->", README.read_text(),
                      flags=re.S)
    assert block, "README lacks the configuration reference block"
    assert block.group(1).strip() == config_reference_markdown(), (
        "README's configuration reference is stale: regenerate it with `nanogpt2 pretrain --help-config --markdown`"
    )
