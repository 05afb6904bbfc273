"""Every shell and Python example of the README's "Using it" section, pasted as written, works;
so do its research example and the tool round trip the demo prints.

The demo runs as a user starts it (``glasskey demo`` in a directory, on a free port), and each
example runs with the lines the demo printed exported, from that directory, once per demo key;
``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY`` are exported as the Anthropic example says. The
only changes to an example are the port (``127.0.0.1:8787`` becomes the demo's) and a key left
as ``gk-...`` (it becomes the demo key, as a reader would paste theirs). The research example
runs where the README says, the clone's root (its ``src`` is linked into the demo's directory),
and its confirmation is answered ``y``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo_process import running_demo
from gateway_fixtures import free_port

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECTION = "## Using it"
RESEARCH_SECTION = "## Research assistant"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.timeout(180)


def examples(section: str = SECTION) -> list[tuple[str, str]]:
    """(language, code) of each bash and python block in one section of the README."""
    text = README.read_text()
    start = text.index(section)
    end = text.index("\n## ", start + len(section))
    found = [(lang, code) for lang, code in BLOCK.findall(text[start:end]) if lang in ("bash", "python")]
    assert found, f"the README's examples in {section!r} were not found"
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    """A demo started in a fresh directory; yields the directory, the port and what it printed."""
    home = tmp_path_factory.mktemp("newcomer")
    port = free_port()
    with running_demo(port, cwd=home) as output:
        assert len(re.findall(r"^export (\w+)=(\S+)$", output, re.MULTILINE)) == 5, output
        yield home, port, output


def key_environments(output: str) -> list[dict[str, str]]:
    """The variables a user exports for each demo key (the admin token too)."""
    admin = re.search(r"^export GLASSKEY_ADMIN_TOKEN=(\S+)$", output, re.MULTILINE)
    assert admin
    keys = re.findall(r"^export OPENAI_BASE_URL=(\S+)\nexport OPENAI_API_KEY=(\S+)$", output, re.MULTILINE)
    assert len(keys) == 2
    return [
        {"OPENAI_BASE_URL": base, "OPENAI_API_KEY": key, "GLASSKEY_ADMIN_TOKEN": admin.group(1)} for base, key in keys
    ]


def shell_environment(exported: dict[str, str]) -> dict[str, str]:
    """A user's shell with the demo's lines exported (and the Anthropic example's two variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLASSKEY_", "OPENAI_"))}
    env.update(exported)
    env["ANTHROPIC_BASE_URL"] = exported["OPENAI_BASE_URL"].removesuffix("/v1")
    env["ANTHROPIC_API_KEY"] = exported["OPENAI_API_KEY"]
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # where `glasskey` is
    return env


# One key: the examples are the same for both (the routed one shows more: lower-cost routes).
@pytest.mark.parametrize("which", ["demo-routed"])
def test_every_readme_example_works_against_the_demo(demo: tuple[Path, int, str], which: str) -> None:
    home, port, printed = demo
    exported = key_environments(printed)[0 if which == "demo-official" else 1]
    env = shell_environment(exported)
    found = examples()
    assert len(found) >= 4, "the README's examples were not found"
    for language, code in found:
        code = code.replace("127.0.0.1:8787", f"127.0.0.1:{port}")
        code = code.replace('"gk-..."', f'"{exported["OPENAI_API_KEY"]}"')
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        ran = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=120)
        shown = f"{language} example failed ({which}):\n{code}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
        assert ran.returncode == 0, shown
        assert '"error":' not in ran.stdout and '"error": ' not in ran.stdout, shown


def test_the_research_example_runs_on_the_two_documents_against_the_demo(demo: tuple[Path, int, str]) -> None:
    home, _port, printed = demo
    env = shell_environment(key_environments(printed)[1])  # the routed key may call the quick and deep models
    if not (home / "src").exists():
        (home / "src").symlink_to(REPO / "src")  # the clone's root, where `make demo` runs
    [(language, code)] = examples(RESEARCH_SECTION)
    assert language == "bash"
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code], cwd=home, env=env, input="y\n", capture_output=True, text=True
    )
    shown = f"research example failed:\n{code}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
    assert ran.returncode == 0, shown
    assert re.search(r"^succeeded: spent \$", ran.stdout, re.MULTILINE), shown
    assert "Research support, not financial advice" in ran.stdout, shown
    # The two notes are the documents, not the samples' licence table.
    assert "microsoft_2005_2010.md" in ran.stdout and "apple_2005_2010.md" in ran.stdout, shown
    assert "SOURCES.md" not in ran.stdout, shown


def test_the_tool_round_trip_the_demo_prints_works(demo: tuple[Path, int, str]) -> None:
    home, _port, printed = demo
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# --- a tool round trip"))
    command = next(line for line in lines[start:] if line.startswith("python -c "))
    # After both keys' lines, as a reader pastes them: the last key's are the ones exported.
    env = shell_environment(key_environments(printed)[-1])
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=home, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    call, answer = ran.stdout.splitlines()
    assert re.fullmatch(r'tool call: get_weather \{"city": ?"[^"]+"\}', call), ran.stdout
    assert answer.startswith("answer: ") and len(answer) > len("answer: "), ran.stdout
