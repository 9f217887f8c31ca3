"""Start-up time of `codeact-envs --help` and `import codeact_envs`, best of N runs, next to their peers.

python scripts/bench_startup.py [--runs 5]

Peers, measured in the same run: a bare `python` (the floor) and `import gymnasium` (the one dependency that
`import codeact_envs` needs: `CodeActEnv` is a `gymnasium.Env`).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "codeact-envs")
COMMANDS = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "python -c 'import gymnasium' (peer)": [sys.executable, "-c", "import gymnasium"],
    "python -c 'import codeact_envs'": [sys.executable, "-c", "import codeact_envs"],
    "codeact-envs --help": [CLI, "--help"],
}


def best_of(command: list[str], runs: int) -> float:
    """The shortest wall-clock time of `runs` runs of `command`, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = [(name, best_of(command, args.runs)) for name, command in COMMANDS.items()]
    width = max(len(name) for name, _ in rows)
    print(f"| {'command':<{width}} | best of {args.runs} |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}|")
    for name, seconds in rows:
        print(f"| {name:<{width}} | {seconds:>7.3f} s |")


if __name__ == "__main__":
    main()
