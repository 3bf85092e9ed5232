"""``hrp-sim``: compare LoRA initialisations on synthetic low-rank regression and real layers.

Commands:
  demo        the main job on a built-in default (table, figures and JSON in ./hrp-results/)
  compare     the general command; its flags are a contract scripts rely on
  sweep       one compare run per value of any experiment flag (resumable)
  verify      the theory's closed forms and bounds vs Monte Carlo, with verdicts
  real        the per-layer study on a real transformer (MiniLM by default; `real` extra)
  convert     a checkpoint (default: the installed MiniLM) to Flax msgpack + orbax
  finetune    full fine-tuning of MiniLM on the polarity set: the real ΔW of `real`
  lora        end-to-end LoRA fine-tuning of MiniLM on polarity or BBC News, every init
  fetch-data  the Pang & Lee polarity sentences from Debian's python3-pattern

Bad input exits with code 2 and one line naming the field and the fix, before anything runs
or is written. Ctrl-C or SIGTERM keeps the seeds finished so far (exit 130 / 143). One module
per command group (``compare``, ``sweep``, ``verify``, ``real``): a new command is a module with
``add_parsers(sub)`` whose parsers ``set_defaults(func=...)``, listed in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import signal
import sys

#: The command modules, imported when the parser is built (``entry`` is light to import, so a
#: Ctrl-C while Python starts is handled like any other).
COMMANDS = ("compare", "sweep", "verify", "real", "lora")


def build_parser():
    import importlib

    from ._shared import Parser

    p = Parser(prog="hrp-sim", description=(__doc__ or "").split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parsers(sub)
    return p


def main(argv=None) -> int:
    from .. import interrupts, runtime

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command's own parser: "hrp-sim compare: error: …"
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv
    with interrupts.catch():
        try:
            runtime.configure(getattr(args, "cpu_devices", None))
            runtime.compile_cache()
            return args.func(args)
        except (ValueError, FileNotFoundError) as e:
            print(f"hrp-sim {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                f"hrp-sim {args.command}: interrupted before anything was written", file=sys.stderr
            )
            return interrupts.exit_code()


def entry() -> None:
    """The ``hrp-sim`` console script: ``main()``, then leave with its code at once
    (``interrupts.leave``: the interpreter's teardown would wait for XLA's worker threads, which
    may still be inside an interrupted computation; every result is on disk by then). A signal
    that arrives while Python imports the commands, or after the last file was written, is
    reported in one line like any other (130 / 143), never as a traceback or a silent kill."""
    from .. import interrupts

    stop = {signal.SIGINT, signal.SIGTERM}
    code = None
    try:  # around the ``with``: a signal may also land while ``catch`` sets itself up
        with interrupts.catch():
            code = main()
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # from here on, a signal waits
    except KeyboardInterrupt:
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        name = signal.Signals(interrupts.received() or signal.SIGINT).name
        when = "while starting" if code is None else "after it finished"
        print(f"hrp-sim: interrupted ({name}) {when}; nothing was lost", file=sys.stderr)
        code = interrupts.exit_code()
    late = signal.sigpending() & stop
    if late and code == 0:
        sig = max(late)
        print(
            f"hrp-sim: {signal.Signals(sig).name} arrived after every file was written; "
            "nothing was lost",
            file=sys.stderr,
        )
        code = 128 + int(sig)
    interrupts.leave(code)
