"""The `codeact-envs` command: run, check and push envs."""

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._check import check
from ._collector import Collector
from ._env import defines_oracle
from ._errors import SandboxError, UntrustedCodeError, did_you_mean
from ._loading import default_split, load_env, load_tasks
from ._policies import ModelPolicy, OraclePolicy
from ._rollout import Trajectory


class _UsageError(Exception):
    """Arguments that the command line does not accept (argparse's own errors), as one line."""


_USER_ERRORS = (
    _UsageError,
    SandboxError,
    FileNotFoundError,
    NotADirectoryError,
    ImportError,
    ValueError,
    PermissionError,
    ConnectionError,
    TimeoutError,
)
_OUTPUT_FORMATS = {".parquet": "a Parquet file", ".jsonl": "a JSON Lines file", "": "a datasets folder"}
_EXAMPLES = """\
examples:
  codeact-envs run envs/humaneval --policy oracle --trust-remote-code
  codeact-envs run org/humaneval --model-class OpenAIServerModel --model my-model \\
      --model-kwarg api_base=http://127.0.0.1:8000/v1 --model-kwarg api_key=x --trust-remote-code
  codeact-envs check envs/humaneval --trust-remote-code
  codeact-envs push envs/humaneval my-org/humaneval --trust-remote-code
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `codeact-envs`; returns the exit status (2 for a user mistake, in one line on stderr)."""
    try:
        args = _parser().parse_args(argv)
        return args.command(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        mistake = _user_mistake(e)
        if mistake is None:
            raise
        print(f"error: {_for_the_command_line(mistake)}", file=sys.stderr)
        return 2


def _user_mistake(error: BaseException) -> BaseException | None:
    """The error itself, or the one a Collector stopped on, when it is the user's to fix; None for a bug."""
    if isinstance(error, _USER_ERRORS):
        return error
    if isinstance(error, RuntimeError) and isinstance(error.__cause__, _USER_ERRORS):
        return error.__cause__
    return None


def _for_the_command_line(error: BaseException) -> str:
    """The message, with the command-line spelling of the fix where the Python one differs."""
    if isinstance(error, UntrustedCodeError):
        return f"{error.risk}; if you trust it, pass --trust-remote-code"
    return str(error)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codeact-envs",
        description="Run, check and publish CodeAct environments (Gymnasium envs whose actions are Python code).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_run(commands)
    _add_check(commands)
    _add_push(commands)
    _add_list(commands)
    return parser


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _output_path(text: str) -> Path:
    """A path whose extension names a format `run` can write; anything else is refused before the run."""
    path = Path(text)
    if path.suffix not in _OUTPUT_FORMATS:
        formats = ", ".join(f"{suffix or 'no extension'} ({what})" for suffix, what in _OUTPUT_FORMATS.items())
        raise argparse.ArgumentTypeError(f"cannot write {path.suffix!r} files; use {formats}")
    if path.suffix == "" and path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; a datasets folder needs a new or empty folder")
    return path


def _add_trust_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow running the env's Python code on this machine (required: an env is code)",
    )


def _add_env_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("env", metavar="ENV", help="an env folder (envs/humaneval) or a Hub dataset repo id (org/name)")
    parser.add_argument("--revision", help="branch, tag or commit of the Hub repo")
    parser.add_argument("--env-id", help="which environment of the manifest, when it declares several")
    _add_trust_argument(parser)
    parser.add_argument("--split", help="task split (default: the manifest's first split)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes (default: 0)")


def _add_run(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="roll a policy over a split and summarize",
        description="Roll a policy over the tasks of a split (with a progress bar on stderr) and print a summary "
        "table. Trajectories are saved only with --output: to a .parquet or .jsonl file, or to a folder "
        "(datasets' save_to_disk) for a path without extension.",
    )
    _add_env_arguments(parser)
    parser.add_argument(
        "--policy", choices=["oracle"], help="a built-in policy: 'oracle' (offline, the env's solution)"
    )
    parser.add_argument("--model", help="model id for --model-class (a Hub id, a local folder, an API model name)")
    parser.add_argument(
        "--model-class",
        default="InferenceClientModel",
        help="any smolagents model class (default: InferenceClientModel)",
    )
    parser.add_argument(
        "--model-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra argument of the model class, VALUE read as JSON when it parses (repeatable)",
    )
    parser.add_argument("--limit", type=_at_least(1), metavar="N", help="run only the first N tasks")
    parser.add_argument(
        "--num-envs", type=_at_least(1), default=2, metavar="N", help="envs stepping in parallel (default: 2)"
    )
    parser.add_argument(
        "--group-size", type=_at_least(1), default=1, metavar="N", help="episodes per task (default: 1)"
    )
    parser.add_argument(
        "--output",
        type=_output_path,
        metavar="PATH",
        help="save the trajectories, one row each: PATH.parquet, PATH.jsonl, or a datasets folder at a PATH "
        "without extension (default: save nothing)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="show no progress bar: neither ours nor those of datasets and huggingface_hub",
    )
    parser.set_defaults(command=_run)


def _add_check(commands: Any) -> None:
    parser = commands.add_parser(
        "check",
        help="validate an env",
        description="Validate an env: manifest, Gymnasium API, oracle reaches the maximum, doing nothing "
        "gets the minimum, same seed gives the same episode.",
    )
    _add_env_arguments(parser)
    parser.add_argument(
        "--max-tasks", type=_at_least(0), default=20, metavar="N", help="tasks to try (default: 20; 0 for all)"
    )
    parser.set_defaults(command=_check)


def _add_push(commands: Any) -> None:
    parser = commands.add_parser(
        "push",
        help="publish an env folder to the Hub",
        description="Run `check` on an env folder (it runs the folder's code), then upload the folder as a Hub "
        "dataset repo in one commit; nothing is uploaded when the check finds a problem.",
    )
    parser.add_argument("env_dir", metavar="ENV_DIR", type=Path, help="the env folder")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub dataset repo, e.g. my-org/my-env")
    _add_trust_argument(parser)
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--token", help="Hub token (default: the logged-in one)")
    parser.add_argument("--commit-message", default="Upload codeact env", help="message of the upload commit")
    parser.set_defaults(command=_push)


def _add_list(commands: Any) -> None:
    parser = commands.add_parser(
        "list", help="list community envs on the Hub", description="List the Hub's dataset repos tagged codeact-env."
    )
    parser.add_argument("--token", help="Hub token (default: the logged-in one)")
    parser.set_defaults(command=_list)


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"revision": args.revision, "env_id": args.env_id, "trust_remote_code": args.trust_remote_code}


def _run(args: argparse.Namespace) -> int:
    with _progress_bars(shown=not args.no_progress):
        with load_env(args.env, **_load_options(args)) as probe:
            split = args.split or default_split(probe)
            tasks = load_tasks(probe, split)
            if args.limit is not None:
                tasks = tasks.select(range(min(args.limit, tasks.num_rows)))
            policy = _policy(args, probe, tasks)
        start = time.perf_counter()
        trajectories = _collect(args, policy, tasks)
        elapsed = time.perf_counter() - start
        _print_summary(args.env, split, trajectories, elapsed)
        if args.output is not None:
            _save(trajectories, args.output)
            print(f"saved {len(trajectories)} trajectories to {args.output}")
    return 0


@contextlib.contextmanager
def _progress_bars(*, shown: bool) -> Iterator[None]:
    """Our progress bar, and those of `datasets` and `huggingface_hub`, as asked; restored afterwards."""
    if shown:
        yield
        return
    import datasets
    import huggingface_hub.utils as hub_utils

    datasets_were_off, hub_was_off = datasets.are_progress_bars_disabled(), hub_utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if not datasets_were_off:
            datasets.enable_progress_bars()
        if not hub_was_off:
            hub_utils.enable_progress_bars()


def _policy(args: argparse.Namespace, env: Any, tasks: Any) -> Any:
    if (args.policy is None) == (args.model is None):
        raise ValueError("pass exactly one of --policy oracle or --model MODEL_ID")
    if args.policy == "oracle":
        if not defines_oracle(env):
            raise ValueError(
                f"{type(env).__name__} defines no oracle(task), so --policy oracle cannot play it; pass --model"
            )
        return OraclePolicy(env, tasks)
    return ModelPolicy(_model(args.model_class, args.model, args.model_kwarg))


def _model(class_name: str, model_id: str, raw_kwargs: list[str]) -> Any:
    import smolagents

    model_class = getattr(smolagents, class_name, None)
    if not isinstance(model_class, type) or not issubclass(model_class, smolagents.Model):
        names = sorted(n for n in dir(smolagents) if n.endswith("Model") and n != "Model")
        raise ValueError(
            f"--model-class {class_name!r} is not a smolagents model class{did_you_mean(class_name, names)}; "
            f"choose one of {', '.join(names)}"
        )
    return model_class(model_id=model_id, **dict(_keyword(raw) for raw in raw_kwargs))


def _keyword(raw: str) -> tuple[str, Any]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise ValueError(f"--model-kwarg expects KEY=VALUE, got {raw!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _collect(args: argparse.Namespace, policy: Any, tasks: Any) -> list[Trajectory]:
    def make_env() -> Any:
        return load_env(args.env, **_load_options(args))

    options = {"num_envs": args.num_envs, "group_size": args.group_size, "seed": args.seed}
    with Collector(make_env, policy, tasks, progress=not args.no_progress, **options) as collector:
        return [trajectory for batch in collector for trajectory in batch]


def _print_summary(env: str, split: str, trajectories: list[Trajectory], elapsed: float) -> None:
    episodes = len(trajectories)
    steps = sum(len(t.actions) for t in trajectories)
    played = [t for t in trajectories if t.infrastructure_error is None]
    rewards = [t.reward for t in played]
    rows = [
        ("env", f"{env} (split {split})"),
        ("episodes", str(episodes)),
        ("mean reward", f"{sum(rewards) / max(len(played), 1):.3f}"),
        ("pass rate", f"{100 * sum(r > 0 for r in rewards) / max(len(played), 1):.1f}% (reward > 0)"),
        ("steps", f"{steps} ({steps / max(episodes, 1):.2f} per episode)"),
        ("time", f"{elapsed:.2f} s ({episodes / max(elapsed, 1e-9):.1f} episodes/s)"),
        *_infrastructure_rows(trajectories, episodes - len(played)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _infrastructure_rows(trajectories: list[Trajectory], failed: int) -> list[tuple[str, str]]:
    """A row for the episodes the infrastructure ended (left out of the mean reward and pass rate), with one cause."""
    if not failed:
        return []
    first = next(t.infrastructure_error for t in trajectories if t.infrastructure_error is not None)
    return [("infra failures", f"{failed} (not counted in the mean reward and pass rate; first: {first})")]


def _save(trajectories: list[Trajectory], output: Path) -> None:
    """One row per trajectory, in the format the extension names (checked when the arguments were parsed)."""
    import datasets

    dataset = datasets.Dataset.from_list([t.to_dict() for t in trajectories])
    if output.suffix == "":
        dataset.save_to_disk(str(output))
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".parquet":
        dataset.to_parquet(str(output))
    else:
        dataset.to_json(str(output), lines=True)


def _check(args: argparse.Namespace) -> int:
    report = check(args.env, split=args.split, max_tasks=args.max_tasks or None, seed=args.seed, **_load_options(args))
    print(f"env           {report.env} (split {report.split})")
    print(f"tasks tried   {report.tasks_tried}")
    if report.oracle_returns:
        print(f"oracle        mean return {sum(report.oracle_returns) / report.tasks_tried:.3f}")
        print(f"do nothing    mean return {sum(report.do_nothing_returns) / report.tasks_tried:.3f}")
    for problem in report.problems:
        print(f"problem       {problem}")
    print("result        " + ("ok" if report.ok else f"{len(report.problems)} problem(s)"))
    return 0 if report.ok else 1


def _push(args: argparse.Namespace) -> int:
    from ._hub import push_to_hub

    commit = push_to_hub(
        args.env_dir,
        args.repo_id,
        private=args.private or None,
        token=args.token,
        commit_message=args.commit_message,
        trust_remote_code=args.trust_remote_code,
    )
    print(f"pushed {args.env_dir} to {args.repo_id} ({commit})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ._hub import list_envs

    envs = list_envs(token=args.token)
    if not envs:
        print("no env tagged codeact-env found")
    for info in envs:
        print(f"{info.repo_id:<40} {info.last_modified or ''!s:<26} {info.description or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
