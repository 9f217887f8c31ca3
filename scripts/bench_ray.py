"""Episodes per second of the Collector's thread backend and Ray backend, in one run, on this machine.

Both run the same workload: the 164 HumanEval tasks with the oracle policy, and a 5-step scripted
policy; the Ray backend runs on a local Ray started here (bound to 127.0.0.1).

    pip install 'codeact-envs[ray]'
    python scripts/bench_ray.py [--num-envs 2]
"""

import argparse
import time
from pathlib import Path

import ray
from bench_collector import SCRIPTED_STEPS, make_counting, make_humaneval, scripted_policy

from codeact_envs import Collector, OraclePolicy, load_tasks


def episodes_per_second(env_fn, policy, tasks, num_envs: int, backend: str) -> float:
    options = {"num_envs": num_envs, "backend": backend}
    start = time.perf_counter()
    with Collector(env_fn, policy, tasks, **options) as collector:
        episodes = sum(len(batch) for batch in collector)
    return episodes / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=2, help="envs stepping in parallel")
    parser.add_argument("--episodes", type=int, default=300, help="episodes of the scripted workload")
    args = parser.parse_args()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}},
    )
    probe = make_humaneval()
    tasks = load_tasks(probe, split="test")
    workloads = {
        "HumanEval oracle (164 episodes, 1 step + UnitTests)": (make_humaneval, OraclePolicy(probe, tasks), tasks),
        f"scripted ({args.episodes} episodes, {SCRIPTED_STEPS} steps)": (
            make_counting,
            scripted_policy,
            [{"id": i} for i in range(args.episodes)],
        ),
    }
    probe.close()
    print(f"num_envs={args.num_envs}; Ray: one actor per env, policy on the driver\n")
    print(f"{'workload':<52} | {'thread ep/s':>11} | {'ray ep/s':>9} | {'ray overhead per episode':>24}")
    print("-" * 106)
    for name, (env_fn, policy, rows) in workloads.items():
        threads = episodes_per_second(env_fn, policy, rows, args.num_envs, "thread")
        actors = episodes_per_second(env_fn, policy, rows, args.num_envs, "ray")
        overhead_ms = (args.num_envs / actors - args.num_envs / threads) * 1000
        print(f"{name:<52} | {threads:>11.1f} | {actors:>9.1f} | {overhead_ms:>21.2f} ms")
    ray.shutdown()


if __name__ == "__main__":
    main()
