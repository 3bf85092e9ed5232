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

import sys

from . import compare, lora, real, sweep, verify
from ._shared import Parser

COMMANDS = (compare, sweep, verify, real, lora)


def build_parser() -> Parser:
    p = Parser(prog="hrp-sim", description=(__doc__ or "").split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS:
        module.add_parsers(sub)
    return p


def main(argv=None) -> int:
    from .. import interrupts, runtime

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
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
    """The ``hrp-sim`` console script: ``main()``, then exit with its code. After an interrupt
    (130, 143) every finished result is on disk and the output folder is released, so it leaves
    at once (``interrupts.leave``): the interpreter's teardown would wait for XLA's worker
    threads, which may still be inside the interrupted computation."""
    from .. import interrupts

    code = main()
    if code in (130, 143):
        interrupts.leave(code)
    sys.exit(code)
