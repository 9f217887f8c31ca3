"""Benchmark the sandbox against in-process `exec` (the floor) and smolagents' `LocalPythonExecutor`.

All three run in this one process run, so the ratios compare like with like on a noisy machine.

    python scripts/bench_sandbox.py [--repeats 300]
"""

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import psutil
from smolagents.local_python_executor import LocalPythonExecutor

from codeact_envs import CodeActEnv, tool

TRIVIAL = "x = x + 1; print(x)"
TOOL_CALL = "x = add(x, 1); print(x)"
CPU_BOUND = "s = 0\nfor i in range(200000):\n    s += i\nprint(s)"
BUSY_LOOP = "while True:\n    pass"
LIVE_EPISODES = 16


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class AddEnv(CodeActEnv):
    """The smallest env with one tool, as a user would write it."""

    @tool
    def add(self, a: int, b: int) -> int:
        """Add two integers."""
        return a + b


class ExecRunner:
    """`exec` in this process: no isolation, no limits, the speed floor."""

    name = "exec (floor)"

    def reset(self) -> None:
        self.namespace = {"add": add, "print": _silent_print, "x": 0}

    def step(self, code: str) -> None:
        exec(code, self.namespace)


class SmolagentsRunner:
    """smolagents' AST interpreter with its default settings."""

    name = "smolagents"

    def __init__(self, timeout_s: float | None = 30):
        self.timeout_s = timeout_s

    def reset(self) -> None:
        self.executor = LocalPythonExecutor([], additional_functions={"add": add}, timeout_seconds=self.timeout_s)
        self.executor.send_tools({})
        self.executor("x = 0")

    def step(self, code: str) -> None:
        try:
            self.executor(code)
        except Exception:
            return


class SandboxRunner:
    """Our env: a forked CPython interpreter in bubblewrap, tool calls served by the host."""

    name = "codeact_envs"

    def __init__(self, timeout_s: float = 10.0):
        self.env = AddEnv(timeout_s=timeout_s, max_steps=1_000_000)

    def reset(self) -> None:
        self.env.reset()
        self.env.step("x = 0")

    def step(self, code: str) -> None:
        self.env.step(code)

    def close(self) -> None:
        self.env.close()


def _silent_print(*args: Any, **kwargs: Any) -> None:
    return None


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _time_steps(runner: Any, code: str, repeats: int) -> list[float]:
    runner.reset()
    for _ in range(min(20, repeats)):
        runner.step(code)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.step(code)
        samples.append(time.perf_counter() - start)
    return samples


def _time_resets(runner: Any, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.reset()
        samples.append(time.perf_counter() - start)
    return samples


def _time_once(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _episode_uss_mb(runners: list[SandboxRunner]) -> float:
    """Median USS of the episode interpreters (the leaf processes of each sandbox), in MB."""
    sizes = []
    for runner in runners:
        root = psutil.Process(runner.env._sandbox.template_pid)
        leaves = [p for p in root.children(recursive=True) if not p.children()]
        sizes += [p.memory_full_info().uss for p in leaves]
    return statistics.median(sizes) / 1e6


def _sandbox_total_uss_mb(runners: list[SandboxRunner]) -> float:
    """USS of every process of each sandbox (bwrap, template, episode), per env, in MB."""
    total = 0
    for runner in runners:
        root = psutil.Process(runner.env._sandbox.template_pid)
        total += sum(p.memory_full_info().uss for p in [root, *root.children(recursive=True)])
    return total / len(runners) / 1e6


def _smolagents_state_mb() -> float:
    """Python memory allocated by one more smolagents executor holding a live episode."""
    gc.collect()
    tracemalloc.start()
    runner = SmolagentsRunner()
    runner.reset()
    runner.step(TRIVIAL)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / 1e6


def _row(name: str, values: dict[str, str], target: str = "") -> list[str]:
    return [
        name,
        values.get("exec", "-"),
        values.get("smol", "-"),
        values.get("ours", "-"),
        values.get("ratio", "-"),
        target,
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _ratio(theirs: float, ours: float) -> str:
    return f"{theirs / ours:.3g}x"


def _print_table(rows: list[list[str]]) -> None:
    header = ["metric", "exec (floor)", "smolagents", "codeact_envs", "smolagents / ours", "target"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def _step_rows(code: str, label: str, repeats: int, runners: dict[str, Any], target: str) -> list[list[str]]:
    medians, p99s = {}, {}
    for key, runner in runners.items():
        count = repeats if key != "smol" or code != CPU_BOUND else max(3, repeats // 50)
        medians[key], p99s[key] = _percentiles(_time_steps(runner, code, count))
    return [
        _row(
            f"{label} median",
            {**{k: _ms(v) for k, v in medians.items()}, "ratio": _ratio(medians["smol"], medians["ours"])},
            target,
        ),
        _row(f"{label} p99", {**{k: _ms(v) for k, v in p99s.items()}, "ratio": _ratio(p99s["smol"], p99s["ours"])}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="timed repetitions per measurement")
    args = parser.parse_args()
    ours = SandboxRunner()
    runners = {"exec": ExecRunner(), "smol": SmolagentsRunner(), "ours": ours}
    rows = []
    rows += _step_rows(TRIVIAL, "trivial step", args.repeats, runners, "<= 0.2 ms, faster than smolagents")
    rows += _step_rows(TOOL_CALL, "tool-call step", args.repeats, runners, "")
    rows += _step_rows(
        CPU_BOUND, "CPU loop 200k", max(10, args.repeats // 10), runners, ">= 30x faster than smolagents"
    )
    resets = {key: _percentiles(_time_resets(runner, args.repeats)) for key, runner in runners.items()}
    rows.append(
        _row(
            "reset median",
            {**{k: _ms(v[0]) for k, v in resets.items()}, "ratio": _ratio(resets["smol"][0], resets["ours"][0])},
            "<= 3 ms (fresh isolated interpreter)",
        )
    )
    rows.append(_row("reset p99", {k: _ms(v[1]) for k, v in resets.items()}))
    live = [SandboxRunner() for _ in range(LIVE_EPISODES)]
    for runner in live:
        runner.reset()
        runner.step(TRIVIAL)
    rows.append(
        _row(
            "idle episode memory",
            {"smol": f"{_smolagents_state_mb():.2f} MB (traced)", "ours": f"{_episode_uss_mb(live):.2f} MB USS"},
            "<= 5 MB",
        )
    )
    rows.append(_row("whole sandbox memory per env", {"ours": f"{_sandbox_total_uss_mb(live):.2f} MB USS"}))
    for runner in live:
        runner.close()
    ours.close()
    quick = SandboxRunner(timeout_s=1.0)
    quick.reset()
    smol_quick = SmolagentsRunner(timeout_s=1)
    smol_quick.reset()
    busy_ours = _time_once(lambda: quick.step(BUSY_LOOP))
    busy_smol = _time_once(lambda: smol_quick.step(BUSY_LOOP))
    quick.close()
    rows.append(
        _row(
            "`while True` with 1 s timeout",
            {"exec": "never returns", "smol": f"{busy_smol:.3f} s", "ours": f"{busy_ours:.3f} s"},
            "<= 1.2 s",
        )
    )
    _print_table(rows)


if __name__ == "__main__":
    main()
