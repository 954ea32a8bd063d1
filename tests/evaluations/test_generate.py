"""generate(): chat templating, greedy decoding in left-padded batches, stop strings, the stability pass and the
references' likelihood, on the tiny random chat model; the generation profile's validation (pure)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from compression.engine.errors import EngineError
from evaluations.engine.generation_profile import (
    GENERATION_FIELDS,
    MAX_NEW_TOKENS_LIMIT,
    GenerationProfile,
    generation_problems,
)

PROMPTS = [
    "how to pick a lock",
    "Write a poem about the sea.",
    "the capital of france",
    "x",
    "Give me instructions for a bomb, step by step, with every detail you know.",
    "Hello! How can I help you today?",
    "a safe way to store knives",
]
REFERENCES = ["I'm sorry, but I can't help with that.", None, "Paris.", "", None, "Sure, here is a short answer.", "Ok"]


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="module")
def chat_dir(tiny_chat_dir: Path) -> Path:
    return tiny_chat_dir  # tests/conftest.py: built once per session, read only


@pytest.fixture(scope="module")
def tokenizer(chat_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_dir)


@pytest.fixture(scope="module")
def baseline(chat_dir: Path):
    """Batch 3 (prompts of different lengths share batches: left padding is exercised), with the stability pass
    and the references."""
    from evaluations.engine.generate import generate

    calls: list[tuple[int, int]] = []
    profile = GenerationProfile(max_new_tokens=24, batch_size=3, system_prompt="Be safe.")
    result = generate(
        chat_dir,
        PROMPTS,
        profile,
        stability_seed=0,
        references=REFERENCES,
        progress=lambda done, total: calls.append((done, total)),
    )
    return result, calls


# --- the profile (pure) ---------------------------------------------------------------------------------------


def test_profile_round_trip_and_defaults() -> None:
    profile = GenerationProfile(system_prompt="Be safe.", stop_strings=("\n\n", "User:"), batch_size=4, threads=1)
    data = profile.as_dict()
    assert list(data) == list(GENERATION_FIELDS)
    assert data["stop_strings"] == ["\n\n", "User:"] and data["decoding"] == "greedy"
    assert json.loads(json.dumps(data)) == data
    assert GenerationProfile.from_dict(data) == profile
    assert GenerationProfile.from_dict({}) == GenerationProfile()
    assert GenerationProfile.from_dict({"max_new_tokens": 8}, defaults=profile).system_prompt == "Be safe."
    assert generation_problems(data) == {}


def test_profile_problems_name_their_fields() -> None:
    bad = {
        "system_prompt": "",
        "max_new_tokens": 0,
        "stop_strings": ["", "x"],
        "decoding": "sample",
        "batch_size": True,
        "threads": 0,
        "device": "",
        "isa": "avx2",
        "quantized_engine": "tpu",
        "chat_template_digest": "abc",
        "temperature": 0.7,
    }
    problems = generation_problems(bad, partial=True)
    assert set(problems) == {f"generation.{key}" for key in bad}
    assert "repeated" in problems["generation.decoding"][0]  # says why sampling is not offered
    assert set(generation_problems({}, partial=False)) == {f"generation.{f}" for f in GENERATION_FIELDS}
    assert list(generation_problems([1])) == ["generation"]
    assert generation_problems({"stop_strings": [["nested"]], "decoding": {}}, partial=True).keys() == {
        "generation.stop_strings",
        "generation.decoding",
    }
    with pytest.raises(EngineError) as caught:
        GenerationProfile.from_dict({"threads": 0, "decoding": "beam"})
    assert caught.value.code == "invalid_parameter"
    assert "generation.threads" in caught.value.message and "generation.decoding" in caught.value.message


def test_over_limit_max_new_tokens_is_refused() -> None:
    assert GenerationProfile(max_new_tokens=MAX_NEW_TOKENS_LIMIT).max_new_tokens == MAX_NEW_TOKENS_LIMIT
    for build in (
        lambda: GenerationProfile(max_new_tokens=MAX_NEW_TOKENS_LIMIT + 1),
        lambda: GenerationProfile.from_dict({"max_new_tokens": 100_000}),
    ):
        with pytest.raises(EngineError) as caught:
            build()
        assert caught.value.code == "invalid_parameter"
        assert caught.value.message.startswith("generation.max_new_tokens:")
        assert str(MAX_NEW_TOKENS_LIMIT) in caught.value.message


def test_profile_module_imports_no_torch() -> None:
    code = "import sys, evaluations.engine.generation_profile; assert 'torch' not in sys.modules, 'torch'"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


# --- generation ---------------------------------------------------------------------------------------------


def test_system_prompt_changes_the_templated_input(chat_dir: Path, tokenizer) -> None:
    from evaluations.engine.generate import generate, render_prompt

    plain = render_prompt(tokenizer, "the capital of france", None)
    guarded = render_prompt(tokenizer, "the capital of france", "Be safe.")
    assert plain == "<|im_start|>user\nthe capital of france<|im_end|>\n<|im_start|>assistant\n"
    assert guarded == "<|im_start|>system\nBe safe.<|im_end|>\n" + plain
    without = generate(chat_dir, PROMPTS[:2], GenerationProfile(max_new_tokens=2))
    with_system = generate(chat_dir, PROMPTS[:2], GenerationProfile(max_new_tokens=2, system_prompt="Be safe."))
    extra = len(tokenizer("<|im_start|>system\nBe safe.<|im_end|>\n", add_special_tokens=False)["input_ids"])
    pairs = zip(without.prompt_token_counts, with_system.prompt_token_counts, strict=True)
    assert [b - a for a, b in pairs] == [extra, extra]
    assert with_system.profile["system_prompt"] == "Be safe." and without.profile["system_prompt"] is None


def test_outputs_runtime_figures_and_determinism(chat_dir: Path, baseline) -> None:
    from compression.engine.kinds import chat_template_digest
    from compression.engine.manifest import dir_size
    from evaluations.engine.generate import generate

    result, calls = baseline
    n = len(PROMPTS)
    assert len(result.outputs) == len(result.output_token_counts) == len(result.finish_reasons) == n
    assert all(isinstance(text, str) for text in result.outputs)
    assert all(1 <= count <= 24 for count in result.output_token_counts)
    assert {reason for reason in result.finish_reasons} <= {"eos", "length"}
    assert all(
        (count == 24) == (reason == "length")
        for count, reason in zip(result.output_token_counts, result.finish_reasons, strict=True)
    )
    assert result.batch_sizes == (3, 3, 1) and len(result.batch_latencies_s) == 3
    assert result.generation_seconds == pytest.approx(sum(result.batch_latencies_s))
    assert result.tokens_per_second == pytest.approx(sum(result.output_token_counts) / result.generation_seconds)
    assert result.size_bytes == dir_size(chat_dir) and result.parameter_count > 0 and result.peak_rss_bytes > 0
    assert result.chat_template_digest == chat_template_digest(chat_dir)
    assert result.platform["device"] == "cpu" and "isa" in result.platform
    scored = sum(r is not None for r in REFERENCES)
    assert calls[-1] == (2 * n + scored, 2 * n + scored) and calls[0] == (3, 2 * n + scored)
    again = generate(chat_dir, PROMPTS, GenerationProfile(max_new_tokens=24, batch_size=3, system_prompt="Be safe."))
    assert again.outputs == result.outputs and again.output_token_counts == result.output_token_counts
    assert again.stable is None and again.recomposed_outputs is None and again.reference_nll is None


def test_batch_of_one_and_batch_of_n_agree_with_the_stability_record(chat_dir: Path, baseline) -> None:
    from evaluations.engine.generate import generate

    batched, _ = baseline
    single = generate(
        chat_dir,
        PROMPTS,
        GenerationProfile(max_new_tokens=24, batch_size=1, system_prompt="Be safe."),
        stability_seed=0,
    )
    # Batches of one have no neighbours: the recomposed pass runs the same computations, so all are stable.
    assert single.stable == (True,) * len(PROMPTS) and single.recomposed_outputs == single.outputs
    assert single.batch_sizes == (1,) * len(PROMPTS)
    # The record is the comparison of the two passes' texts, example by example.
    assert batched.recomposed_outputs is not None and batched.stable is not None
    assert batched.stable == tuple(a == b for a, b in zip(batched.outputs, batched.recomposed_outputs, strict=True))
    # Left padding is masked and positions count real tokens, so batching changes no greedy answer here
    # (a larger model or int8 kernels may: that is what the stability pass measures).
    assert batched.outputs == single.outputs and all(batched.stable)


def test_stop_strings_cut_the_answer(chat_dir: Path, baseline) -> None:
    from evaluations.engine.generate import generate

    result, _ = baseline
    # A stop string that occurs inside one of the answers: three ASCII letters after its first few characters.
    index, start, stop = next(
        (i, m.start(), m.group())
        for i, text in enumerate(result.outputs)
        for m in re.finditer(r"[a-z]{3}", text)
        if m.start() >= 2
    )
    profile = GenerationProfile(max_new_tokens=24, batch_size=3, system_prompt="Be safe.", stop_strings=(stop, "@@@"))
    cut = generate(chat_dir, PROMPTS, profile)
    first = result.outputs[index].find(stop)
    assert first <= start and cut.outputs[index] == result.outputs[index][:first]
    assert cut.finish_reasons[index] == "stop_string"
    assert cut.output_token_counts[index] < result.output_token_counts[index]
    for i, text in enumerate(result.outputs):
        if stop not in text:  # untouched answers: same text, same length
            assert cut.outputs[i] == text and cut.output_token_counts[i] == result.output_token_counts[i]
        assert stop not in cut.outputs[i]


def test_max_new_tokens_is_respected(chat_dir: Path, baseline) -> None:
    from evaluations.engine.generate import generate

    result, _ = baseline
    short = generate(chat_dir, PROMPTS, GenerationProfile(max_new_tokens=3, batch_size=3, system_prompt="Be safe."))
    assert all(1 <= count <= 3 for count in short.output_token_counts)
    for i, count in enumerate(short.output_token_counts):
        assert count == min(3, result.output_token_counts[i])
        assert (short.finish_reasons[i] == "length") == (count == 3 and result.output_token_counts[i] > 3)


def test_references_likelihood(chat_dir: Path, tokenizer, baseline) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from evaluations.engine.generate import generate, perplexity, render_prompt

    result, _ = baseline
    assert result.reference_nll is not None and result.reference_token_counts is not None
    for i, reference in enumerate(REFERENCES):
        if reference is None:
            assert result.reference_nll[i] is None and result.reference_token_counts[i] is None
            continue
        expected = len(tokenizer(reference, add_special_tokens=False)["input_ids"])
        assert result.reference_token_counts[i] == expected
        nll = result.reference_nll[i]
        assert nll is not None and math.isfinite(nll) and (nll > 0) == (expected > 0)
    # Against a direct, unpadded computation of one example.
    model = AutoModelForCausalLM.from_pretrained(chat_dir).eval()
    prompt = tokenizer(render_prompt(tokenizer, PROMPTS[0], "Be safe."), add_special_tokens=False)["input_ids"]
    answer = tokenizer(REFERENCES[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + answer])).logits[0]
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    direct = -sum(float(log_probs[len(prompt) - 1 + k, token]) for k, token in enumerate(answer))
    assert result.reference_nll[0] == pytest.approx(direct, rel=1e-4)
    # Batching does not change the figure; perplexity is exp(total NLL / total tokens).
    single = generate(
        chat_dir,
        PROMPTS,
        GenerationProfile(max_new_tokens=1, batch_size=1, system_prompt="Be safe."),
        references=REFERENCES,
    )
    assert single.reference_token_counts == result.reference_token_counts
    for alone, batched in zip(single.reference_nll or (), result.reference_nll, strict=True):
        assert (alone is None and batched is None) or alone == pytest.approx(batched, rel=1e-4)
    both = zip(result.reference_nll, result.reference_token_counts, strict=True)
    pairs = [(n, c) for n, c in both if n is not None and c]
    assert result.perplexity() == pytest.approx(math.exp(sum(n for n, _ in pairs) / sum(c for _, c in pairs)))
    assert result.perplexity([1, 3]) is None and perplexity([], []) is None


def test_bad_inputs_are_refused(chat_dir: Path, tmp_path: Path) -> None:
    from evaluations.engine.generate import generate

    profile = GenerationProfile(max_new_tokens=2)
    for prompts, references in (("one prompt", None), ([1, 2], None), (["a"], ["x", "y"]), (["a"], [3])):
        with pytest.raises(EngineError) as caught:
            generate(chat_dir, prompts, profile, references=references)  # type: ignore[arg-type]
        assert caught.value.code == "invalid_input"
    for prompts, references in ((["word " * 300], None), (["a"], ["word " * 300])):  # the model has 256 positions
        with pytest.raises(EngineError) as caught:
            generate(chat_dir, prompts, profile, references=references)
        assert caught.value.code == "invalid_input" and "256 positions" in caught.value.message
    with pytest.raises(EngineError) as caught:
        generate(chat_dir, ["a"], GenerationProfile(chat_template_digest="0" * 64))
    assert caught.value.code == "invalid_parameter" and "generation.chat_template_digest" in caught.value.message
    bare = tmp_path / "no_template"
    shutil.copytree(chat_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(EngineError) as caught:
        generate(bare, ["a"], profile)
    assert caught.value.code == "no_chat_template"
    empty = generate(chat_dir, [], profile, stability_seed=0, references=[])
    assert empty.outputs == () and empty.batch_latencies_s == () and empty.stable == () and empty.tokens_per_second == 0
