"""Every code block of README.md and docs/*.md runs, or is checked, here.

- ``python`` blocks are executed, each in a fresh namespace in a temporary folder.
- ``yaml`` blocks are config fragments: merged into ``base.yaml`` as an override file
  would be (``training.config.load_config``) and their loss section built.
- ``bash`` blocks: every ``spectral-restore`` line goes through the command's own
  parser (``cli.main`` with the command handlers swapped for a recorder) and the
  config a ``train`` or ``evaluate`` line would run with is resolved; the cheap
  lines (``--help``, ``demo``, ``export``, ``restore``) are also executed (``large``).
  ``bash SCRIPT`` lines name scripts that exist and parse, and ``pip install`` lines
  name extras that ``pyproject.toml`` declares.
- A block the test cannot run carries ``<!-- not-run: reason -->`` on the line before
  it; its ``spectral-restore`` lines are still parsed. Any other block fails the test.
"""

import argparse
import glob
import os
import re
import shlex
import subprocess

import numpy as np
import pytest

# The command line under test: the console script `spectral-restore` runs this
# module's main().
from training import cli as command_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md"] + sorted(
    os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "docs", "*.md"))
)
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!-- not-run: (.+\S) -->$")
SHELLS = ("bash", "sh", "shell")
# Commands cheap enough to execute (seconds with the small model); the others (train,
# evaluate) are parsed and their config resolved.
EXECUTED_COMMANDS = ("demo", "export", "restore")


def code_blocks(document):
    """``(line, language, code, not_run_reason)`` of every fenced block of ``document``."""
    with open(os.path.join(ROOT, document), encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{document}:{index + 1}: a code block is never closed")
        before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        marker = NOT_RUN.match(before)
        blocks.append(
            (
                index + 1,
                opening.group(1).lower(),
                "\n".join(lines[index + 1 : end]),
                marker.group(1) if marker else None,
            )
        )
        index = end + 1
    return blocks


BLOCKS = [(document, *block) for document in DOCUMENTS for block in code_blocks(document)]


def each(blocks):
    """Parametrizes a test over ``blocks``, one case per block, named ``document:line``."""
    return pytest.mark.parametrize(
        "document, line, language, code, reason",
        blocks,
        ids=[f"{document}:{line}" for document, line, *_ in blocks],
    )


def of_language(*languages):
    return [block for block in BLOCKS if block[2] in languages]


def shell_commands(code):
    """The block's command lines as argument lists: continuations joined, comments
    and leading ``VAR=value`` assignments dropped."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        if words:
            commands.append(words)
    return commands


def declared_extras():
    """The optional-dependency names of pyproject.toml."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*=", section, flags=re.M))


def parse_command(argv):
    """The argparse namespace ``spectral-restore argv`` would run with: ``cli.main``
    itself parses (overrides after options included), the handlers only record."""
    received = []
    build_parser = command_line.build_parser

    def recording_parser():
        parser = build_parser()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for subparser in action.choices.values():
                    subparser.set_defaults(handler=lambda args: received.append(args) or 0)
        return parser

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command_line, "build_parser", recording_parser)
        try:
            status = command_line.main(argv)
        except SystemExit as stop:  # --help, or an argparse error
            assert stop.code == 0, f"spectral-restore {shlex.join(argv)}: argparse exit {stop.code}"
            return None
    assert status == 0 and len(received) == 1, f"spectral-restore {shlex.join(argv)}: {status}"
    return received[0]


def resolve_config(args):
    """The config a ``train`` or ``evaluate`` line would run with, as the trainer and
    the evaluation load it; the loss terms and the model name are checked too."""
    from spectral_restore.models.registry import model_class
    from training.config import build_loss, load_config
    from training.train import backend_config

    config = backend_config(load_config(args.config, args.overrides))
    build_loss(config["loss"])
    assert config["model"]["preset"] in model_class(config["model"]["architecture"]).PRESETS
    return config


def check_command(argv):
    args = parse_command(argv)
    if args is None or args.command not in ("train", "evaluate"):
        return args
    if args.command == "evaluate" and args.pairs:
        assert args.model or args.identity, f"{shlex.join(argv)}: --pairs needs MODEL or --identity"
        assert args.out, f"{shlex.join(argv)}: evaluate --pairs needs -o OUT"
        return args
    resolve_config(args)
    return args


def test_the_documents_have_code_blocks():
    assert len(BLOCKS) >= 20
    assert {"python", "bash", "yaml"} <= {language for _, _, language, _, _ in BLOCKS}


def test_the_readme_test_command_is_what_ci_runs():
    """The README's first block is the two commands, and .ci/run runs its test command."""
    document, _, language, code, _ = BLOCKS[0]
    assert (document, language) == ("README.md", "bash")
    assert shell_commands(code) == [
        ["bash", "training/run_main.sh"],
        ["bash", "tests/run_tests.sh"],
    ]
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert re.search(r"^[^#\n]*\bbash tests/run_tests\.sh$", f.read(), flags=re.M)


@each(BLOCKS)
def test_every_block_is_checked_or_marked(document, line, language, code, reason):
    """A block is Python, YAML or shell (checked below) or says why it is not run;
    shell lines other than `spectral-restore`, `bash SCRIPT` and `pip install` need
    the marker too."""
    if reason is not None:
        if language == "python":
            compile(code, f"{document}:{line}", "exec")
        return
    assert language in ("python", "yaml") + SHELLS, (
        f"{document}:{line}: a ```{language} block is not run by tests/test_docs.py; "
        "add <!-- not-run: reason --> on the line before it"
    )
    if language in SHELLS:
        for words in shell_commands(code):
            known = (
                words[0] == "spectral-restore"
                or (words[0] == "bash" and len(words) >= 2)
                or words[:2] == ["pip", "install"]
            )
            assert known, f"{document}:{line}: `{shlex.join(words)}` is unchecked; mark it not-run"


@each(of_language("text"))
def test_folder_trees_name_existing_folders(document, line, language, code, reason):
    names = [row.split()[0] for row in code.splitlines() if row.split()]
    folders = [name for name in names if name.endswith("/")]
    missing = [folder for folder in folders if not os.path.isdir(os.path.join(ROOT, folder))]
    assert not missing, f"{document}:{line} names folders that do not exist: {missing}"


@each(of_language(*SHELLS))
def test_shell_lines(document, line, language, code, reason, monkeypatch):
    monkeypatch.chdir(ROOT)  # commands are written for the repository root
    extras = declared_extras()
    for words in shell_commands(code):
        if words[0] == "spectral-restore":
            check_command(words[1:])
        elif reason is None and words[0] == "bash":
            script = os.path.join(ROOT, words[1])
            assert os.path.isfile(script), f"{document}:{line}: {words[1]} does not exist"
            subprocess.run(["bash", "-n", script], check=True)
        elif reason is None and words[:2] == ["pip", "install"]:
            for target in words[2:]:
                named = re.fullmatch(r"\.\[([\w,-]+)\]", target)
                if named:
                    unknown = set(named.group(1).split(",")) - extras
                    assert not unknown, f"{document}:{line}: no extra {unknown} in pyproject.toml"


YAML_BLOCKS = [block for block in of_language("yaml") if block[4] is None]


@each(YAML_BLOCKS)
def test_yaml_blocks_are_valid_config(document, line, language, code, reason, tmp_path):
    from training.config import CONFIG_DIR, build_loss, load_config

    path = tmp_path / "block.yaml"
    path.write_text(f"extends: {os.path.join(CONFIG_DIR, 'base.yaml')}\n{code}\n")
    config = load_config(str(path))
    build_loss(config["loss"])


PYTHON_BLOCKS = [block for block in of_language("python") if block[4] is None]


@each(PYTHON_BLOCKS)
def test_python_blocks_run(document, line, language, code, reason, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{document}:{line}", "exec"), {"__name__": "__docs__"})


def _prepare_inputs(args):
    """Files a cheap command reads, made where the document assumes they exist: a small
    untrained model for `export`, short tones in each input's format for `restore`
    (an input ending in `/` is a folder holding two)."""
    from spectral_restore.audio_io import write_audio
    from spectral_restore.models import build_model

    if args.command == "export" and not os.path.exists(args.model):
        os.makedirs(os.path.dirname(args.model) or ".", exist_ok=True)
        build_model("crn", "small").save(args.model)
    if args.command == "restore":
        tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(24000) / 16000).astype("float32")
        for path in args.inputs:
            if os.path.exists(path):
                continue
            if path.endswith("/"):  # a folder of recordings: two files, one in a subfolder
                os.makedirs(os.path.join(path, "day2"))
                write_audio(os.path.join(path, "take1.wav"), tone, 16000)
                write_audio(os.path.join(path, "day2", "take2.flac"), tone, 16000)
            else:
                write_audio(path, tone, 16000)


def cheap_commands(code):
    return [
        words[1:]
        for words in shell_commands(code)
        if words[0] == "spectral-restore" and (words[1] in EXECUTED_COMMANDS or "--help" in words)
    ]


# Blocks repeating the same cheap commands (README and docs/serving.md) run once.
CHEAP_BLOCKS = list(
    {
        repr(cheap_commands(code)): (document, line, language, code, reason)
        for document, line, language, code, reason in reversed(of_language(*SHELLS))
        if cheap_commands(code)
    }.values()
)


@pytest.mark.large
@each(CHEAP_BLOCKS)
def test_cheap_commands_run(document, line, language, code, reason, tmp_path, monkeypatch, capsys):
    """`--help`, `demo`, `export` and `restore` lines executed in order, in a temporary
    folder, each expected to succeed."""
    monkeypatch.chdir(tmp_path)
    for argv in cheap_commands(code):
        if "--help" in argv:
            with pytest.raises(SystemExit) as stop:
                command_line.main(argv)
            assert stop.value.code == 0 and "usage: spectral-restore" in capsys.readouterr().out
            continue
        _prepare_inputs(parse_command(argv))
        assert command_line.main(argv) == 0, f"spectral-restore {shlex.join(argv)} failed"
