"""A small Dockerfile parser and the hadolint-style rules this project holds its images to.

We cannot build images on the test machine, so the Dockerfiles are checked statically. The
rule ids follow hadolint's (DL3006, ...) where one exists, so a reader can look the reason up;
``LB`` rules are this project's own.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

# Instructions whose argument is a command, in shell or exec (JSON array) form.
_COMMAND_INSTRUCTIONS = {"RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK"}
_ROOT_USERS = {"root", "0"}
_REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
)


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based line where the instruction starts
    keyword: str  # upper-cased, e.g. RUN
    args: str  # the rest, continuation lines joined with a space


@dataclass
class Stage:
    base: str  # as written after FROM (ARGs substituted)
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.rule} {self.message}"


def parse(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining ``\\`` continuations and dropping
    comments (a comment line inside a continuation is dropped too, as Docker does)."""
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        joined = " ".join(part for part in buffer if part)
        buffer = []
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
    if buffer:
        joined = " ".join(part for part in buffer if part)
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
    return instructions


def _substitute(value: str, args: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or ""
        return args.get(name, match.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, value)


def stages(instructions: list[Instruction]) -> list[Stage]:
    """Group instructions by FROM; ARGs declared before the first FROM are substituted in
    base image names, as Docker does."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "ARG" and not result:
            arg_name, _, default = ins.args.partition("=")
            global_args[arg_name.strip()] = default.strip().strip('"')
            continue
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--platform")]
            base = _substitute(words[0], global_args)
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(base, alias))
        elif result:
            result[-1].instructions.append(ins)
    return result


def exec_form(args: str) -> list[str] | None:
    """The argv of an exec-form (JSON array) instruction, or None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _commands(run_args: str) -> list[list[str]]:
    """The simple commands of a shell-form RUN, split on && ; || and |."""
    try:
        lexer = shlex.shlex(run_args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return [run_args.split()]
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in {"&&", "||", ";", "|", "&"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [cmd for cmd in commands if cmd]


def _is_pip_install(cmd: list[str]) -> bool:
    words = [w for w in cmd if not w.startswith("-")]
    for i, word in enumerate(words):
        if re.fullmatch(r"pip3?(\.\d+)?", word.rsplit("/", 1)[-1]):
            return i + 1 < len(words) and words[i + 1] == "install"
        if word == "pip" and i >= 1 and words[i - 1].startswith("python"):
            return i + 1 < len(words) and words[i + 1] == "install"
    return False


def _check_base(stage: Stage, stage_names: set[str], line: int) -> list[Finding]:
    base = stage.base
    if base in stage_names or base == "scratch":
        return []
    if "@sha256:" in base:
        return []
    image, _, tag = base.rpartition(":") if ":" in base.split("/")[-1] else (base, "", "")
    if not tag:
        return [Finding("DL3006", line, f"base image {base!r} has no tag; pin a version")]
    if tag == "latest" or not re.search(r"\d", tag):
        return [Finding("DL3007", line, f"base image {image}:{tag} is not pinned to a version")]
    return []


def lint(text: str, console_scripts: set[str] | None = None) -> list[Finding]:
    """Every rule violation in a Dockerfile. ``console_scripts`` (from pyproject's
    [project.scripts]) enables the check that the entrypoint is one of ours."""
    instructions = parse(text)
    found: list[Finding] = []
    parsed = stages(instructions)
    if not parsed:
        return [Finding("LB001", 1, "no FROM instruction")]
    from_lines = [ins.line for ins in instructions if ins.keyword == "FROM"]
    names: set[str] = set()
    for stage, line in zip(parsed, from_lines, strict=True):
        found += _check_base(stage, names, line)
        if stage.name:
            names.add(stage.name)
    for ins in instructions:
        found += _check_instruction(ins)
    found += _check_final_stage(parsed[-1], console_scripts)
    return found


def _check_instruction(ins: Instruction) -> list[Finding]:
    found: list[Finding] = []
    if ins.keyword == "ADD":
        found.append(Finding("DL3020", ins.line, "use COPY, not ADD, for files and folders"))
    if ins.keyword == "MAINTAINER":
        found.append(Finding("DL4000", ins.line, "MAINTAINER is deprecated; use a LABEL"))
    if ins.keyword == "WORKDIR":
        path = ins.args.strip().strip('"')
        if not (path.startswith("/") or path.startswith("$")):
            found.append(Finding("DL3000", ins.line, f"WORKDIR {path!r} must be absolute"))
    if ins.keyword in {"CMD", "ENTRYPOINT"} and exec_form(ins.args) is None:
        found.append(Finding("DL3025", ins.line, f"{ins.keyword} must use the exec (JSON) form"))
    if ins.keyword == "RUN":
        found += _check_run(ins)
    return found


def _check_run(ins: Instruction) -> list[Finding]:
    found: list[Finding] = []
    commands = _commands(ins.args)
    installs_apt = False
    for cmd in commands:
        head = cmd[0].rsplit("/", 1)[-1]
        if head == "sudo":
            found.append(Finding("DL3004", ins.line, "do not use sudo; switch USER instead"))
        if head in {"apt-get", "apt"} and "install" in cmd:
            installs_apt = True
            if "--no-install-recommends" not in cmd:
                found.append(
                    Finding("DL3015", ins.line, "apt-get install needs --no-install-recommends")
                )
            if not {"-y", "--yes", "-qy", "-yq"} & set(cmd):
                found.append(Finding("DL3014", ins.line, "apt-get install needs -y"))
        if head == "apt":
            found.append(Finding("DL3027", ins.line, "use apt-get, not apt, in scripts"))
        if _is_pip_install(cmd) and "--no-cache-dir" not in cmd:
            found.append(Finding("DL3042", ins.line, "pip install needs --no-cache-dir"))
    if installs_apt and not re.search(r"rm\s+-rf?\s+/var/lib/apt/lists", ins.args):
        found.append(
            Finding(
                "DL3009", ins.line, "remove /var/lib/apt/lists/* in the RUN that installs packages"
            )
        )
    return found


def _user_is_root(user_args: str) -> bool:
    user = user_args.strip().split(":", 1)[0]
    return user in _ROOT_USERS


def _check_final_stage(stage: Stage, console_scripts: set[str] | None) -> list[Finding]:
    found: list[Finding] = []
    user: str | None = None
    user_line = 0
    labels = " ".join(ins.args for ins in stage.instructions if ins.keyword == "LABEL")
    first_line = stage.instructions[0].line if stage.instructions else 1
    for key in _REQUIRED_LABELS:
        if key not in labels:
            found.append(Finding("LB002", first_line, f"the image has no {key} label"))
    entrypoint: Instruction | None = None
    for ins in stage.instructions:
        if ins.keyword == "USER":
            user, user_line = ins.args.strip(), ins.line
        elif ins.keyword in {"ENTRYPOINT", "CMD"}:
            if user is None or _user_is_root(user):
                found.append(
                    Finding(
                        "DL3002",
                        ins.line,
                        f"{ins.keyword} runs as root; set a non-root USER before it",
                    )
                )
            if ins.keyword == "ENTRYPOINT":
                entrypoint = ins
        elif (
            ins.keyword == "COPY"
            and user is not None
            and not _user_is_root(user)
            and "--chown=" not in ins.args
        ):
            # Files copied after switching user are meant for that user; without --chown
            # they stay root-owned and the process cannot write them.
            found.append(
                Finding(
                    "LB003", ins.line, f"COPY after USER {user} (line {user_line}) needs --chown"
                )
            )
    if user is None or _user_is_root(user):
        found.append(
            Finding(
                "DL3002", user_line or first_line, "the final stage must switch to a non-root USER"
            )
        )
    if entrypoint is None:
        found.append(Finding("LB004", first_line, "the final stage has no ENTRYPOINT"))
    elif console_scripts is not None:
        argv = exec_form(entrypoint.args)
        if argv and argv[0] not in console_scripts:
            found.append(
                Finding(
                    "LB005",
                    entrypoint.line,
                    f"ENTRYPOINT {argv[0]!r} is not a [project.scripts] entry "
                    f"({', '.join(sorted(console_scripts))})",
                )
            )
    if not any(ins.keyword == "HEALTHCHECK" for ins in stage.instructions):
        found.append(
            Finding(
                "LB006", first_line, "declare a HEALTHCHECK (or HEALTHCHECK NONE with a reason)"
            )
        )
    return found
