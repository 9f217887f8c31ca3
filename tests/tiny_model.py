"""A tiny random chat model built offline: byte-level BPE tokenizer with a ChatML template, 2-layer Llama."""

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
TRAINING_TEXT = [
    "def add(a, b):\n    return a + b\n",
    "```python\nprint(add(1, 2))\n```",
    "final_answer(42)",
    "for i in range(10):\n    total = total + i\n",
    "Thought: I will call the tool and print the result.",
] * 40


def build_tiny_model(folder: Path) -> Path:
    """Save a ~0.5 M parameter random Llama and its tokenizer to `folder`; return the folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    from tokenizers import decoders

    tokenizer.decoder = decoders.ByteLevel()
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
    )
    wrapped.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        hidden_size=128,
        intermediate_size=344,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(wrapped),
        bos_token_id=wrapped.bos_token_id,
        eos_token_id=wrapped.eos_token_id,
        pad_token_id=wrapped.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    wrapped.save_pretrained(folder)
    return folder


class ScriptedReplies:
    """Makes a real model generate chosen replies, for tests that need valid code from a random model.

    At each generation step every token but the reply's next one is masked out, so the sampled ids are the reply's
    while the logits (hence the log-probs a policy records) stay the model's own. `reply(context, occurrence)` gets
    the decoded context of one batch row and how many times that exact context was seen before, and returns the text.
    """

    def __init__(self, model, tokenizer, reply):
        self.model = model
        self.tokenizer = tokenizer
        self.reply = reply
        self.seen: dict[tuple[int, ...], int] = {}
        self._generate = model.generate
        model.generate = self.generate

    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        from transformers import LogitsProcessorList

        scripts = [self._script(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask, strict=True)]
        force = _ForceTokens(scripts, input_ids.shape[1], self.tokenizer.eos_token_id)
        return self._generate(
            input_ids=input_ids, attention_mask=attention_mask, logits_processor=LogitsProcessorList([force]), **kwargs
        )

    def _script(self, context: list[int]) -> list[int]:
        occurrence = self.seen.get(tuple(context), 0)
        self.seen[tuple(context)] = occurrence + 1
        text = self.reply(self.tokenizer.decode(context), occurrence)
        return [*self.tokenizer.encode(text, add_special_tokens=False), self.tokenizer.eos_token_id]


class _ForceTokens:
    def __init__(self, scripts: list[list[int]], prompt_length: int, eos_token_id: int):
        self.scripts = scripts
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids, scores):
        import torch

        position = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, float("-inf"))
        for row, script in enumerate(self.scripts):
            forced[row, script[position] if position < len(script) else self.eos_token_id] = 0.0
        return forced
