"""Benchmark the Hub path of an env against the tests' local Hub-protocol server, over real HTTP.

Pushes envs/humaneval, then times `load_env` by name with an empty cache (cold) and a filled one (warm,
online and with HF_HUB_OFFLINE), and the first row that `load_tasks(..., streaming=True)` yields.

    python scripts/bench_hub.py [--repeats 5]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HUMANEVAL = ROOT / "envs" / "humaneval"
REPO_ID = "bench/humaneval"
_SETTINGS_THAT_WOULD_WIN = ("HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_CACHE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    hub = _local_hub(home)
    hub.start()
    try:
        rows = _measure(home / "hf-home" / "hub", args.repeats)
    finally:
        hub.stop()
        shutil.rmtree(home, ignore_errors=True)
    _print_table(rows, args.repeats)


def _local_hub(home: Path) -> Any:
    """The tests' Hub server on 127.0.0.1, with the Hub clients pointed at it before they are first imported."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hub_server import HubServer

    server = HubServer(home / "storage")
    for name in _SETTINGS_THAT_WOULD_WIN:
        os.environ.pop(name, None)
    os.environ.update(
        HF_ENDPOINT=server.url,
        HF_HOME=str(home / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
    )
    return server


def _measure(hub_cache: Path, repeats: int) -> list[tuple[str, list[float], str]]:
    import huggingface_hub

    from codeact_envs import load_env, load_tasks, push_to_hub

    def load() -> None:
        load_env(REPO_ID, trust_remote_code=True).close()

    def load_from_an_empty_cache() -> None:
        shutil.rmtree(hub_cache, ignore_errors=True)
        load()

    def first_streamed_row() -> None:
        with load_env(REPO_ID, trust_remote_code=True) as env:
            start = time.perf_counter()
            next(iter(load_tasks(env, split="test", streaming=True)))
            first_row_times.append(time.perf_counter() - start)

    first_row_times: list[float] = []
    push_times = _times(lambda: push_to_hub(HUMANEVAL, REPO_ID), 1)
    rows = [("push_to_hub (check + 1 commit)", push_times, "loads the folder, plays one oracle episode")]
    rows.append(
        ("load_env(folder)", _times(lambda: load_env(HUMANEVAL, trust_remote_code=True).close(), repeats), "baseline")
    )
    rows.append(("load_env(repo) cold", _times(load_from_an_empty_cache, repeats), "empty cache: 8 requests"))
    rows.append(("load_env(repo) warm", _times(load, repeats), "cached: one request (the revision)"))
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    rows.append(("load_env(repo) offline", _times(load, repeats), "HF_HUB_OFFLINE: no HTTP at all"))
    huggingface_hub.constants.HF_HUB_OFFLINE = False
    _times(first_streamed_row, repeats)
    rows.append(("first streamed task row", first_row_times, "load_tasks(streaming=True), next(iter(...))"))
    return rows


def _times(action: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def _print_table(rows: list[tuple[str, list[float], str]], repeats: int) -> None:
    print(f"Hub path of envs/humaneval over HTTP to 127.0.0.1, {repeats} repeats (median, min)")
    print(f"| {'measurement':<31} | {'median':>9} | {'min':>9} | notes")
    print(f"|{'-' * 33}|{'-' * 11}|{'-' * 11}|{'-' * 45}")
    for name, times, notes in rows:
        print(f"| {name:<31} | {_ms(statistics.median(times))} | {_ms(min(times))} | {notes}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:6.1f} ms"


if __name__ == "__main__":
    main()
