"""Run a Python script under cProfile timed by the process's own CPU clock.

    python -m bench.cpuprofile OUT.prof SCRIPT [ARGS...]

`python -m cProfile` times functions by the wall clock, so on a machine shared with other work
every function looks slower by however long the process waited for a core; this profile
counts only the CPU the process used, like the benchmark's CPU per event.
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m bench.cpuprofile OUT.prof SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    out, script, *args = argv
    sys.argv = [script, *args]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    finally:
        profiler.disable()
        profiler.dump_stats(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
