import contextlib
import gc
import inspect
import pickle
import subprocess
import sys
import textwrap

import psutil
import pytest
from adder_env import TASKS, text_replies, tool_replies, write_adder_env
from conftest import descendants, still_running
from test_failures import make_flaky_env
from test_stopping import sandboxes_since

from codeact_envs import InfrastructureError, SandboxError
from codeact_envs._prompt import continuation_ids, observation_turn

integration = pytest.importorskip("codeact_envs.trl", reason="needs the [trl] extra")
CodeActSpec, CodeActToolEnv, RewardComponent = (
    integration.CodeActSpec,
    integration.CodeActToolEnv,
    integration.RewardComponent,
)


@pytest.fixture(scope="module")
def adder(tmp_path_factory):
    return write_adder_env(tmp_path_factory.mktemp("envs") / "adder")


@pytest.fixture
def chat_model(tiny_tool_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_tool_model), AutoTokenizer.from_pretrained(tiny_tool_model)


def _train_one_step(model, tokenizer, spec, tmp_path, **hooks):
    """One real GRPO step; returns the trainer and the batch it trained on."""
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=512,
        max_tool_calling_iterations=4,
        max_steps=1,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
    )
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        args=args,
        train_dataset=spec.train_dataset,
        reward_funcs=spec.reward_funcs,
        **hooks,
    )
    batches = []
    generate_and_score = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda inputs: batches.append(generate_and_score(inputs)) or batches[-1]
    trainer.train()
    return trainer, batches[0]


def _spans(ids: list[int], mask: list[int], value: int) -> list[list[int]]:
    """The runs of ids where the mask equals `value`."""
    runs, current = [], []
    for token, bit in zip(ids, mask, strict=True):
        if bit == value:
            current.append(token)
        elif current:
            runs, current = [*runs, current], []
    return [*runs, current] if current else runs


def test_the_environment_factory_path_trains_on_env_rewards_and_masks_every_observation(adder, chat_model, tmp_path):
    from tiny_model import ScriptedReplies

    model, tokenizer = chat_model
    ScriptedReplies(model, tokenizer, tool_replies)
    spec = CodeActSpec(adder, trust_remote_code=True)
    trainer, batch = _train_one_step(model, tokenizer, spec, tmp_path, environment_factory=spec.environment_factory)
    logged = trainer.state.log_history[0]
    assert logged["rewards/ExactMatch/mean"] == 0.5
    assert logged["rewards/StepPenalty/mean"] == pytest.approx(-0.02)
    assert logged["rewards/CodeActToolEnv/mean"] == pytest.approx(0.0)
    assert logged["reward"] == pytest.approx(0.48)
    assert logged["grad_norm"] > 0
    for row, environment in enumerate(trainer.environments):
        observations = environment._trajectory().observations
        ids = batch["completion_ids"][row][batch["completion_mask"][row].bool()].tolist()
        loss_mask = batch["tool_mask"][row][: len(ids)].tolist()
        outputs = [tokenizer.decode(span) for span in _spans(ids, loss_mask, 1)]
        assert [o.startswith("<tool_call>") for o in outputs] == [True, True, False]
        gaps = _spans(ids, loss_mask, 0)
        assert gaps == [continuation_ids(tokenizer, [{"role": "tool", "content": o}]) for o in observations]


def test_the_rollout_func_path_trains_on_token_exact_episodes_with_an_env_mask(adder, tiny_model, tmp_path):
    from tiny_model import ScriptedReplies
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)
    ScriptedReplies(model, tokenizer, text_replies)
    spec = CodeActSpec(adder, actions="text", trust_remote_code=True)
    played = []
    rollout = spec.rollout_func

    def recording_rollout(prompts, trainer):
        outputs = rollout(prompts, trainer)
        played.extend(outputs["trajectory"])
        return outputs

    trainer, batch = _train_one_step(model, tokenizer, spec, tmp_path, rollout_func=recording_rollout)
    logged = trainer.state.log_history[0]
    assert logged["rewards/ExactMatch/mean"] == 0.5
    assert logged["reward"] == pytest.approx(0.48)
    assert logged["grad_norm"] > 0
    for row, trajectory in enumerate(played):
        start = len(trajectory.turns[0].prompt_ids)
        ids = batch["completion_ids"][row][batch["completion_mask"][row].bool()].tolist()
        assert ids == trajectory.token_ids[start:]
        loss_mask = batch["tool_mask"][row][: len(ids)].tolist()
        assert _spans(ids, loss_mask, 1) == [turn.output_ids for turn in trajectory.turns]
        observations = [observation_turn(o) for o in trajectory.observations[:-1]]
        assert _spans(ids, loss_mask, 0) == [continuation_ids(tokenizer, [o]) for o in observations]


def test_the_adapter_shows_trl_only_reset_python_and_get_reward(adder):
    public = [name for name, _ in inspect.getmembers(CodeActToolEnv, inspect.isfunction) if not name.startswith("_")]
    assert public == ["get_reward", "python", "reset"]


def test_the_python_tool_has_a_schema_trl_can_build(adder):
    from transformers.utils import get_json_schema

    schema = get_json_schema(CodeActToolEnv.python)
    assert schema["function"]["name"] == "python"
    assert schema["function"]["parameters"]["required"] == ["code"]
    assert "persistent interpreter" in schema["function"]["description"]


def test_the_factory_and_reward_functions_pickle_for_the_async_trainer(adder):
    spec = CodeActSpec(adder, trust_remote_code=True)
    factory = pickle.loads(pickle.dumps(spec.environment_factory))
    environment = factory()
    assert environment.reset(task=TASKS[0], row=0) == "What is 1 + 2?"
    assert environment.python("final_answer(add(1, 2))") == "[no output]"
    assert environment.get_reward() == pytest.approx(0.99)
    assert [f.__name__ for f in pickle.loads(pickle.dumps(spec.reward_funcs))] == ["ExactMatch", "StepPenalty"]


def test_reward_functions_and_get_reward_count_the_reward_once(adder):
    spec = CodeActSpec(adder, trust_remote_code=True)
    environment = spec.environment_factory()
    environment.reset(task=TASKS[1], row=1)
    environment.python("x = add(3, 4)")
    environment.python("final_answer(x)")
    components = [f(completions=[None], environments=[environment])[0] for f in spec.reward_funcs]
    assert components == [pytest.approx(1.0), pytest.approx(-0.02)]
    assert environment.get_reward() == pytest.approx(0.0)
    assert sum(components) + environment.get_reward() == pytest.approx(0.98)


def test_without_reward_functions_get_reward_counts_the_whole_reward(adder):
    environment = CodeActSpec(adder, trust_remote_code=True).environment_factory()
    environment.reset(task=TASKS[0], row=0)
    environment.python("final_answer(3)")
    assert RewardComponent("ExactMatch")(completions=[None]) == [None]
    assert environment.get_reward() == pytest.approx(0.99)


def test_the_episode_over_the_tool_says_so_and_runs_nothing_more(adder):
    environment = CodeActSpec(adder, trust_remote_code=True).environment_factory()
    environment.reset(task=TASKS[0], row=0)
    environment.python("final_answer(3)")
    assert environment.python("final_answer(4)") == "[the episode is over: no more code runs]"
    assert environment.get_reward() == pytest.approx(0.99)


def test_an_infrastructure_failure_gives_none_rewards_and_a_tool_error():
    environment = CodeActToolEnv(make_flaky_env)
    environment.reset(task={"a": 1, "b": 2, "answer": 3}, row=0)
    with pytest.raises(InfrastructureError, match="database is down"):
        environment.python("lookup('prices')")
    assert environment.get_reward() is None
    assert RewardComponent("ExactMatch")(completions=[None], environments=[environment]) == [None]


def test_an_env_that_cannot_start_gives_none_rewards_not_a_crash():
    def no_sandbox():
        raise SandboxError("bubblewrap cannot start here")

    environment = CodeActToolEnv(no_sandbox)
    assert "failed to start" in environment.reset(task={}, row=0)
    with pytest.raises(InfrastructureError, match="bubblewrap cannot start"):
        environment.python("1")
    assert environment.get_reward() is None


def test_a_garbage_collected_adapter_leaves_no_sandbox_process(adder):
    before = descendants()
    environment = CodeActSpec(adder, trust_remote_code=True).environment_factory()
    environment.reset(task=TASKS[0], row=0)
    sandboxes = sandboxes_since(before)
    assert sandboxes
    del environment
    gc.collect()
    assert still_running(sandboxes) == set()


def test_adapters_trl_never_closed_leave_no_process_when_the_trainer_process_ends(adder):
    script = textwrap.dedent(
        f"""
        import psutil
        from codeact_envs.trl import CodeActSpec

        spec = CodeActSpec({str(adder)!r}, trust_remote_code=True)
        pool = [spec.environment_factory() for _ in range(2)]
        for environment in pool:
            environment.reset(task={TASKS[0]!r}, row=0)
        print(" ".join(str(p.pid) for p in psutil.Process().children(recursive=True)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    sandboxes = [int(pid) for pid in done.stdout.split()]
    assert sandboxes
    assert still_running(_processes(sandboxes)) == set()


def _processes(pids: list[int]) -> set:
    """The processes of `pids` that still exist."""
    found = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.add(psutil.Process(pid))
    return found


def test_specs_refuse_the_hook_of_the_other_action_format(adder):
    text, tool = CodeActSpec(adder, actions="text", trust_remote_code=True), CodeActSpec(adder, trust_remote_code=True)
    with pytest.raises(ValueError, match="actions='tool'"):
        _ = text.environment_factory
    with pytest.raises(ValueError, match="actions='text'"):
        _ = tool.rollout_func


def test_the_dataset_holds_the_shared_system_prompt_and_the_task_rows(adder):
    spec = CodeActSpec(adder, trust_remote_code=True)
    row = spec.train_dataset[1]
    assert row["prompt"][0]["role"] == "system"
    assert "def add(a: int, b: int) -> int:" in row["prompt"][0]["content"]
    assert "`python` tool" in row["prompt"][0]["content"]
    assert row["task"] == TASKS[1]
    assert row["row"] == 1


def test_a_spec_from_a_hub_repo_pins_its_envs_to_the_resolved_commit(adder, hub):
    from codeact_envs import push_to_hub

    commit = push_to_hub(adder, "trl-org/adder", trust_remote_code=True)
    spec = CodeActSpec("trl-org/adder", revision="main", split="train", trust_remote_code=True)
    assert spec.env_fn.keywords["revision"] == commit
    environment = spec.environment_factory()
    assert environment.reset(**spec.train_dataset[2]) == "What is 5 + 6?"
    assert environment.python("final_answer(add(5, 6))") == "[no output]"
    assert environment._trajectory().commit == commit


def test_the_rollout_func_turns_an_env_that_cannot_start_into_none_rewards(adder, tiny_model):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    def no_sandbox():
        raise SandboxError("bubblewrap cannot start here")

    spec = CodeActSpec(adder, actions="text", trust_remote_code=True)
    spec.env_fn = no_sandbox
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    trainer = SimpleNamespace(
        processing_class=tokenizer,
        max_completion_length=64,
        state=SimpleNamespace(global_step=3),
        accelerator=SimpleNamespace(num_processes=1),
    )
    outputs = spec.rollout_func([spec.train_dataset[0]["prompt"]] * 2, trainer)
    assert outputs["completion_ids"] == [[tokenizer.eos_token_id]] * 2
    assert outputs["env_mask"] == [[0]] * 2
    assert [t.infrastructure_error for t in outputs["trajectory"]] == ["SandboxError: bubblewrap cannot start here"] * 2
    assert [t.policy_version for t in outputs["trajectory"]] == [3, 3]
    assert [f(completions=[None] * 2, trajectory=outputs["trajectory"]) for f in spec.reward_funcs] == [[None] * 2] * 3


def test_with_several_training_processes_every_turn_generates_for_every_episode_until_all_are_over(
    adder, tiny_model, monkeypatch
):
    """vLLM's server mode gathers the prompts of every process in each turn: a process whose episodes are over still
    takes part, with as many prompts as it has episodes, while another process plays on."""
    from types import SimpleNamespace

    import accelerate.utils
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    answer = [*tokenizer.encode("```python\nfinal_answer(add(1, 2))\n```"), tokenizer.eos_token_id]
    prompts_per_call = []

    def generate(prompts, images, num_generations):
        prompts_per_call.append(len(prompts))
        return prompts, [answer] * len(prompts), [[[-0.5]] * len(answer)] * len(prompts), None

    other_process_plays = iter([True, True, True, False])
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda flags: [*flags, next(other_process_plays)])
    trainer = SimpleNamespace(
        processing_class=tokenizer,
        max_completion_length=64,
        state=SimpleNamespace(global_step=0),
        accelerator=SimpleNamespace(num_processes=2),
        use_vllm=True,
        vllm_generation=SimpleNamespace(generate=generate),
    )
    spec = CodeActSpec(adder, actions="text", trust_remote_code=True)
    outputs = spec.rollout_func([spec.train_dataset[0]["prompt"]] * 2, trainer)
    assert prompts_per_call == [2, 2, 2]
    assert [len(t.turns) for t in outputs["trajectory"]] == [1, 1]
    assert [t.reward for t in outputs["trajectory"]] == [pytest.approx(0.99)] * 2


def test_the_adapter_names_the_dataset_it_needs(adder):
    environment = CodeActSpec(adder, trust_remote_code=True).environment_factory()
    with pytest.raises(ValueError, match=r"CodeActSpec\.train_dataset"):
        environment.reset(prompt=[{"role": "user", "content": "hi"}])
