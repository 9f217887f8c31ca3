"""Benchmark what a codeact env adds to a trainer's step, against TorchRL's own Python tool.

Everything runs in this one process run, on the same code (`x = 1; print(x)`), so the ratios compare like with like:

1. one TRL tool call: `CodeActToolEnv.python(code)` (the `environment_factory` adapter; bubblewrap sandbox) against
   TorchRL's `PersistentPythonProcess.execute(code)` (a host subprocess, no isolation);
2. one TorchRL `ChatEnv` step whose assistant turn holds the code in a fenced block: with `CodeActTransform` against
   `PythonInterpreter(persistent=True)`, and the bare `ChatEnv` step (no tool) whose time both include.

    pip install -e ".[trl,torchrl]"
    python scripts/bench_training.py [--calls 300]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from tensordict import set_list_to_stack
from torchrl.data.llm import History
from torchrl.envs import TransformedEnv
from torchrl.envs.llm import ChatEnv
from torchrl.envs.llm.transforms import DataLoadingPrimer, PythonInterpreter
from torchrl.envs.llm.transforms.tools import PersistentPythonProcess

from codeact_envs import load_env, load_tasks
from codeact_envs.torchrl import CodeActTransform, task_primer
from codeact_envs.trl import CodeActSpec

HUMANEVAL = Path(__file__).resolve().parents[1] / "envs" / "humaneval"
CODE = "x = 1\nprint(x)"
REPLY = f"Let me check.\n```python\n{CODE}\n```"
TARGET = 10.0
STEPS_PER_EPISODE = 20
WARMUP = 20


def make_env():
    return load_env(HUMANEVAL, trust_remote_code=True, max_steps=10**6)


def tool_calls(calls: int) -> list[float]:
    """Seconds per `python(code)` call of the TRL adapter, episodes of STEPS_PER_EPISODE calls."""
    spec = CodeActSpec(HUMANEVAL, trust_remote_code=True, max_steps=10**6)
    environment = spec.environment_factory()
    task = spec.train_dataset[0]
    times = []
    for call in range(WARMUP + calls):
        if call % STEPS_PER_EPISODE == 0:
            environment.reset(**task)
        start = time.perf_counter()
        observation = environment.python(CODE)
        times.append(time.perf_counter() - start)
        assert observation == "1", observation
    return times[WARMUP:]


def peer_executes(calls: int) -> list[float]:
    """Seconds per `PersistentPythonProcess.execute(code)`, TorchRL's persistent interpreter."""
    process = PersistentPythonProcess(timeout=10.0)
    times = []
    try:
        for _ in range(WARMUP + calls):
            start = time.perf_counter()
            result = process.execute(CODE)
            times.append(time.perf_counter() - start)
            assert result["success"] and result["stdout"].strip() == "1", result
    finally:
        process.cleanup()
    return times[WARMUP:]


class TimedCodeActTransform(CodeActTransform):
    """`CodeActTransform` that records how long its per-item work takes (run the code, record the step)."""

    def __init__(self, env_fn: Callable):
        super().__init__(env_fn)
        self.item_s: list[float] = []

    def _process_batch_item(self, content: str, index: int) -> list[str] | None:
        start = time.perf_counter()
        result = super()._process_batch_item(content, index)
        self.item_s.append(time.perf_counter() - start)
        return result


class TimedPythonInterpreter(PythonInterpreter):
    """TorchRL's `PythonInterpreter` that records how long its per-item work takes (extract and run the code)."""

    def __init__(self):
        super().__init__(persistent=True)
        self.item_s: list[float] = []

    def _process_batch_item(self, content: str, index: int) -> list[str] | None:
        start = time.perf_counter()
        result = super()._process_batch_item(content, index)
        self.item_s.append(time.perf_counter() - start)
        return result


def our_chat() -> tuple[TransformedEnv, TimedCodeActTransform]:
    """A ChatEnv playing codeact episodes: `task_primer` and `CodeActTransform`."""
    env = TransformedEnv(ChatEnv(batch_size=(1,)), task_primer(_tasks(), num_envs=1))
    transform = TimedCodeActTransform(make_env)
    env.append_transform(transform)
    return env, transform


def bare_chat() -> tuple[TransformedEnv, None]:
    """A ChatEnv with no tool, starting from the same chat as `our_chat` (the env's system prompt and first
    observation), so the history TorchRL copies at each step has the same size."""
    with make_env() as probe:
        observation, _ = probe.reset(options={"task": _tasks()[0]})
        chat = ChatEnv(batch_size=(1,), system_prompt=probe.system_prompt)
    return TransformedEnv(chat, DataLoadingPrimer(dataloader=[{"query": [observation]}], batch_size=1)), None


def peer_chat() -> tuple[TransformedEnv, TimedPythonInterpreter]:
    """`bare_chat` with TorchRL's own Python tool, a persistent host interpreter per batch item."""
    env, _ = bare_chat()
    transform = TimedPythonInterpreter()
    env.append_transform(transform)
    return env, transform


def chat_steps(calls: int, build: Callable[[], tuple]) -> tuple[list[float], list[float]]:
    """Seconds per ChatEnv step whose assistant turn holds the code (a new episode every STEPS_PER_EPISODE), and
    seconds of the tool's per-item work in those steps."""
    with set_list_to_stack(True):
        env, tool = build()
        times = []
        state = env.reset()
        reply = History.from_chats([[{"role": "assistant", "content": REPLY}]])
        for call in range(WARMUP + calls):
            if call and call % STEPS_PER_EPISODE == 0:
                state = env.reset()
            state.set(("history", "full"), state["history"].prompt.extend(reply, inplace=False, dim=-1))
            start = time.perf_counter()
            stepped = env.step(state)
            times.append(time.perf_counter() - start)
            state = stepped["next"]
        env.close()
    return times[WARMUP:], [] if tool is None else tool.item_s[WARMUP:]


def _tasks():
    with make_env() as probe:
        return load_tasks(probe, split="test").select(range(1))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _median(times: list[float]) -> float:
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per measurement")
    args = parser.parse_args()
    ours_call = _median(tool_calls(args.calls))
    peer_call = _median(peer_executes(args.calls))
    bare_step = _median(chat_steps(args.calls, bare_chat)[0])
    ours_steps, ours_items = chat_steps(args.calls, our_chat)
    peer_steps, peer_items = chat_steps(args.calls, peer_chat)
    ours_step, peer_step = _median(ours_steps), _median(peer_steps)
    ours_item, peer_item = _median(ours_items), _median(peer_items)
    rows = [
        ("TRL tool call: python(code)", ours_call, peer_call),
        ("TorchRL transform step: the tool's work per item", ours_item, peer_item),
        ("TorchRL ChatEnv step, tool included", ours_step, peer_step),
        ("TorchRL ChatEnv step, no tool (shared by both)", bare_step, bare_step),
    ]
    print(f"code: {CODE!r}; medians of {args.calls} calls; peer: TorchRL PersistentPythonProcess (host subprocess)")
    print("| what | ours (codeact_envs, bubblewrap) | peer (TorchRL PythonInterpreter) | peer / ours |")
    print("|---|---|---|---|")
    for what, ours, peer in rows:
        print(f"| {what} | {_ms(ours)} | {_ms(peer)} | {peer / ours:.1f}x |")
    slowest = min(peer_call / ours_call, peer_item / ours_item)
    verdict = "met" if slowest >= TARGET else "MISSED"
    print(f"target: the time our env adds is at least {TARGET:g}x below the peer's, sandbox included: {verdict}")


if __name__ == "__main__":
    main()
