"""Train a model with TRL's GRPO on a codeact env and print the reward of every step.

    pip install -e ".[trl]"
    python scripts/train_grpo.py --model Qwen/Qwen2.5-0.5B-Instruct --env envs/humaneval --steps 50 --trust-remote-code

`--actions tool` (default) lets the model call a `python` tool (TRL's `environment_factory`; the model's chat template
must support tool calls, as Qwen2.5/3 and Llama 3.1+ do); `--actions text` has it write fenced code blocks (a
token-exact `rollout_func`; any chat model). With `--use-vllm` TRL generates with vLLM (`pip install trl[vllm]`).
Runs on CPU too (slowly), which is how the test suite smoke-tests it with a tiny model.
"""

import argparse
from collections.abc import Sequence

import torch
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from codeact_envs.trl import CodeActSpec


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="Hub model id or local folder")
    parser.add_argument("--env", default="envs/humaneval", help="env folder or Hub dataset repo id")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the env's code (required)")
    parser.add_argument("--actions", choices=["tool", "text"], default="tool", help="python tool or fenced code")
    parser.add_argument("--split", help="task split (default: the env's first)")
    parser.add_argument("--num-tasks", type=int, help="train on the first N tasks only")
    parser.add_argument("--num-generations", type=int, default=4, help="episodes per task (GRPO group size)")
    parser.add_argument("--tasks-per-step", type=int, default=2, help="tasks (groups) in each step's batch")
    parser.add_argument("--max-completion-length", type=int, default=1024, help="tokens of a whole episode")
    parser.add_argument("--max-turns", type=int, default=8, help="tool calls per episode (actions=tool)")
    parser.add_argument("--learning-rate", type=float, default=1e-6)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--use-vllm", action="store_true", help="generate with vLLM (colocated)")
    parser.add_argument("--output-dir", default="grpo-output", help="where TRL writes checkpoints")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """Train; return the logged metrics of every step."""
    args = parse_args(argv)
    spec = CodeActSpec(
        args.env,
        split=args.split,
        actions=args.actions,
        trust_remote_code=args.trust_remote_code,
        num_tasks=args.num_tasks,
    )
    trainer = _trainer(args, spec)
    trainer.train()
    return [entry for entry in trainer.state.log_history if "reward" in entry]


def _trainer(args: argparse.Namespace, spec: CodeActSpec) -> GRPOTrainer:
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.num_generations * args.tasks_per_step,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        max_tool_calling_iterations=args.max_turns,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        use_vllm=args.use_vllm,
        vllm_mode="colocate",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )
    if args.actions == "tool":
        hook = {"environment_factory": spec.environment_factory}
    else:
        hook = {"rollout_func": spec.rollout_func}
    return GRPOTrainer(
        model=args.model,
        args=config,
        train_dataset=spec.train_dataset,
        reward_funcs=spec.reward_funcs,
        callbacks=[_PrintReward()],
        **hook,
    )


class _PrintReward(TrainerCallback):
    """Prints the reward and each reward component after every step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            components = {key.split("/")[1]: value for key, value in logs.items() if _is_component_mean(key)}
            detail = ", ".join(f"{name} {value:.3f}" for name, value in components.items())
            print(f"step {state.global_step}: reward {logs['reward']:.3f} ({detail})", flush=True)


def _is_component_mean(key: str) -> bool:
    return key.startswith("rewards/") and key.endswith("/mean")


if __name__ == "__main__":
    main()
