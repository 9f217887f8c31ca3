"""Roll the oracle policy over the first HumanEval tasks, offline, and print what happened.

python scripts/demo.py [--tasks 10]
"""

import argparse
import time
from pathlib import Path

from codeact_envs import load_env, load_tasks

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10, help="how many tasks to run")
    args = parser.parse_args()
    with load_env(HUMANEVAL, trust_remote_code=True) as env:
        tasks = load_tasks(env, split="test").select(range(args.tasks))
        start = time.perf_counter()
        rewards = []
        for task in tasks:
            env.reset(seed=0, options={"task": task})
            _, reward, _, _, info = env.step(env.oracle(task))
            rewards.append(reward)
            print(f"{task['task_id']:<14} reward {reward:.1f}  {info['rewards']}")
        elapsed = time.perf_counter() - start
        print(f"\n{len(rewards)} episodes, mean reward {sum(rewards) / len(rewards):.3f}, {elapsed:.2f} s")
        print("\nThe last episode, as env.render() shows it:\n")
        print(env.render())


if __name__ == "__main__":
    main()
