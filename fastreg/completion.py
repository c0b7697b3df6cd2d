"""Shell completion scripts for bash and zsh, made from the CLI's argparse parser (so they list
exactly the commands and options `fastreg` takes).

bash: ``source <(fastreg completion bash)`` (or save it in ``/etc/bash_completion.d/fastreg``).
zsh: ``fastreg completion zsh > "${fpath[1]}/_fastreg"`` then ``compinit``; sourcing it after
``compinit`` works too."""
from __future__ import annotations

import argparse

# options whose value is a path: complete file names after them
_FILE_OPTIONS = {"--config", "-c", "--file", "-f"}


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    out: dict[str, tuple[str, argparse.ArgumentParser]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                out[name] = (helps.get(name, ""), sub)
    return out


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _positional_choices(parser: argparse.ArgumentParser) -> list[str]:
    for a in parser._actions:
        if not a.option_strings and a.choices and not isinstance(a, argparse._SubParsersAction):
            return [str(c) for c in a.choices]
    return []


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    return _bash(parser) if shell == "bash" else _zsh(parser)


def _bash(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    top = " ".join(list(commands) + [s for a in _options(parser) for s in a.option_strings])
    cases = []
    for name, (_, sub) in commands.items():
        opts = " ".join(s for a in _options(sub) for s in a.option_strings)
        words = " ".join(_positional_choices(sub))
        cases.append(f'        {name}) opts="{opts}"; words="{words}" ;;')
    files = "|".join(sorted(_FILE_OPTIONS))
    return f"""# bash completion for fastreg (made by `fastreg completion bash`)
_fastreg() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local cmd="" i opts="" words=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break ;; esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "{top}" -- "$cur"))
        return 0
    fi
    case "$prev" in {files}) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;; esac
    case "$cmd" in
{chr(10).join(cases)}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n "$words" ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
}}
complete -o filenames -F _fastreg fastreg
"""


def _zq(text: str) -> str:
    """Text inside a single-quoted zsh word, and inside an _arguments description ([...])."""
    return text.replace("'", "'\\''").replace("[", "(").replace("]", ")").replace(":", " -")


def _zsh(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    described = "\n".join(f"        '{name}:{_zq(help_)}'" for name, (help_, _) in commands.items())
    cases = []
    for name, (_, sub) in commands.items():
        specs = []
        for a in _options(sub):
            if a.option_strings == ["-h", "--help"]:
                continue
            value = ""
            if a.nargs != 0:
                value = ":file:_files" if set(a.option_strings) & _FILE_OPTIONS else ":value: "
            names = a.option_strings
            rest = f"'[{_zq(a.help or '')}]{value}'"
            # -c and --config exclude each other: '(--config -c)'{--config,-c}'[help]:file:_files'
            specs.append(f"'({' '.join(names)})'{{{','.join(names)}}}{rest}" if len(names) > 1
                         else f"'{names[0]}'{rest}")
        choices = _positional_choices(sub)
        specs.append(f"'1:argument:({' '.join(choices)})'" if choices else "'*:file:_files'")
        cases.append(f"        {name}) _arguments {' '.join(specs)} ;;")
    return f"""#compdef fastreg
# zsh completion for fastreg (made by `fastreg completion zsh`)
_fastreg() {{
    local state line
    local -a commands
    commands=(
{described}
    )
    _arguments -C '--version[print the version]' '--debug[show tracebacks of failures]' \\
        '1:command:->command' '*::argument:->argument'
    case $state in
    command) _describe 'command' commands ;;
    argument)
        case $line[1] in
{chr(10).join(cases)}
        esac ;;
    esac
}}
if [[ "${{zsh_eval_context[-1]}}" == loadautofunc ]]; then
    _fastreg "$@"
else
    compdef _fastreg fastreg
fi
"""
