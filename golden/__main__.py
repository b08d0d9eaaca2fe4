"""Run the golden package's commands: ``python -m golden {params,energy,train,bench}``."""

import sys


def main(argv=None) -> int:
    """Dispatch to a sub-command's ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "params": "golden.params",
        "energy": "golden.energy",
        "train": "golden.train",
        "bench": "golden.bench",
    }
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m golden {params,energy,train,bench} [options]\n"
              "  params  parameter count of every paper ablation (C=48 baseline)\n"
              "  energy  firing rates, SOPs and energy of a checkpoint (table, CSV, JSON)\n"
              "  train   train a small model on digits and save a checkpoint\n"
              "  bench   forward time and peak memory of the 55M model on the CPU")
        return 0
    if not argv or argv[0] not in commands:
        what = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {what}: one of {', '.join(commands)} (python -m golden --help)",
              file=sys.stderr)
        return 2
    import importlib
    return importlib.import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
