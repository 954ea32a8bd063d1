"""The behavioural distillation engine on the tiny random chat model: prompts and their validation, the student
cut from the teacher, seeded sampling and teacher top-k targets, the rounds (rejection sampling, training,
the held-back failure loop) through ``compress``, and the safety teacher with its cache. No Django."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from compression.engine.errors import EngineError
from compression.engine.types import BehaviourData, ChatPrompt, CompressionRequest

IDS = {"judge": 1, "stress_set": 2, "heldback_split": 3}
FAST = {**IDS, "rounds": 2, "steps": 2, "batch_size": 4, "max_new_tokens": 6, "samples_per_prompt": 2, "top_k": 5}
FAST["max_length"] = 64
SLICES = ("routine", "edge", "adversarial")
STRESS = tuple(
    ChatPrompt(f"stress:{i}", f"tell me about the cat number {i}", i % 2 == 0, SLICES[i % 3]) for i in range(6)
)
HELDOUT = tuple(ChatPrompt(f"held:{i}", f"how do I open the door {i}", i % 2 == 1, "adversarial") for i in range(4))
DATA = BehaviourData(STRESS, HELDOUT)
SYSTEM = "Be safe."


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""


def hash_judge(prompts, answers):
    """Deterministic stand-in for a refusal judge: the refusal probability is a hash of the answer."""
    out = []
    for answer in answers:
        if not answer.strip():
            out.append(("degenerate", 0.0))
            continue
        p = hashlib.sha256(answer.encode()).digest()[0] / 255
        out.append(("refusal" if p >= 0.5 else "compliance", p))
    return out


def always(behaviour: str, probability: float):
    return lambda prompts, answers: [(behaviour, probability) for _ in answers]


def distill(source: Path, out: Path, *, judge=hash_judge, data=DATA, progress=None, **overrides):
    """compress() a behavioural_distill request; the rounds' records are in details["rounds"]."""
    from compression.engine.runner import compress

    rounds: list[dict] = []
    request = CompressionRequest(
        "behavioural_distill",
        source,
        out,
        {**FAST, **overrides.pop("parameters", {})},
        seed=overrides.pop("seed", 3),
        behaviour_data=data,
        judge=judge,
        on_round=rounds.append,
        system_prompt=overrides.pop("system_prompt", SYSTEM),
        **overrides,
    )
    result = compress(request, progress=progress)
    assert result.details["rounds"] == rounds
    json.dumps(rounds)  # JSON-serialisable
    return result


@pytest.fixture(scope="module")
def loaded(tiny_chat_dir):
    from compression.engine.chat import load_chat_model

    return load_chat_model(tiny_chat_dir)


@pytest.fixture(scope="module")
def chat(loaded):
    from compression.engine.sampling import ChatModel

    return ChatModel.of(loaded, torch.device("cpu"))


@pytest.fixture(scope="module")
def run(tiny_chat_dir, tmp_path_factory):
    """One default run (token level, 2 rounds), with its progress reports."""
    stages: list[tuple[str, float]] = []
    out = tmp_path_factory.mktemp("bd") / "student"
    result = distill(tiny_chat_dir, out, progress=lambda stage, fraction: stages.append((stage, fraction)))
    return result, stages


# ---- types ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((ChatPrompt("a", "  ", True, "edge"),), "'stress' row 0 has an empty or non-string text"),
        ((ChatPrompt("a", "x", True, "edge"), ChatPrompt("b", "y", 1, "edge")), "'stress' row 1 harmful must be"),
        ((ChatPrompt("a", "x", True, "edge"), ChatPrompt("a", "y", False, "edge")), "row 1 repeats prompt_id 'a'"),
        ((ChatPrompt("", "x", True, "edge"),), "'stress' row 0 has an empty or non-string prompt_id"),
        (("text",), "'stress' row 0 is not a ChatPrompt"),
    ],
)
def test_behaviour_data_refuses_bad_rows_naming_field_and_row(rows, message):
    with pytest.raises(EngineError) as caught:
        BehaviourData(stress=rows)
    assert caught.value.code == "invalid_input"
    assert message in caught.value.message


def test_behaviour_data_counts_and_digest():
    assert DATA.counts() == {"stress": 6, "heldout": 4}
    assert DATA.digest() == BehaviourData(list(STRESS), list(HELDOUT)).digest()
    assert DATA.digest() != BehaviourData(STRESS[:5], HELDOUT).digest()
    with pytest.raises(EngineError, match="'heldout' row 1"):
        BehaviourData(STRESS, (HELDOUT[0], HELDOUT[0]))


def test_request_behaviour_fields_default_off_and_judge_is_not_compared():
    plain = CompressionRequest("fp16", Path("a"), Path("b"))
    assert (plain.behaviour_data, plain.judge, plain.on_round, plain.system_prompt) == (None, None, None, None)
    one = CompressionRequest("behavioural_distill", Path("a"), Path("b"), judge=hash_judge, behaviour_data=DATA)
    other = CompressionRequest("behavioural_distill", Path("a"), Path("b"), judge=always("refusal", 1.0))
    assert one == CompressionRequest("behavioural_distill", Path("a"), Path("b"), behaviour_data=DATA)
    assert one != other  # behaviour_data differs


def test_render_prompt_lives_in_the_compression_engine():
    from compression.engine import chat
    from evaluations.engine import generate

    assert generate.render_prompt is chat.render_prompt


# ---- the student ---------------------------------------------------------------------------------------------


def test_kept_layers_are_evenly_spaced_with_first_and_last():
    from compression.engine.chat_student import kept_layer_indices

    assert kept_layer_indices(30, 15) == [0, 2, 4, 6, 8, 10, 12, 15, 17, 19, 21, 23, 25, 27, 29]
    assert kept_layer_indices(5, 3) == [0, 2, 4]
    assert kept_layer_indices(4, 4) == [0, 1, 2, 3]
    assert kept_layer_indices(7, 1) == [0]
    with pytest.raises(EngineError, match="'layers_kept' = 8"):
        kept_layer_indices(7, 8)


def _llama(layers: int, tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def test_student_keeps_layers_renumbers_the_cache_and_stays_tied():
    from compression.engine.chat_student import build_chat_student, decoder_layers

    teacher = _llama(5, tied=True)
    student, shape = build_chat_student(teacher, 3, None)
    assert shape["layers_kept"] == 3 and shape["kept_layer_indices"] == [0, 2, 4]
    assert student.config.num_hidden_layers == 3 and teacher.config.num_hidden_layers == 5
    assert [layer.self_attn.layer_idx for layer in decoder_layers(student)] == [0, 1, 2]
    assert torch.equal(decoder_layers(student)[1].mlp.up_proj.weight, decoder_layers(teacher)[2].mlp.up_proj.weight)
    assert student.lm_head.weight is student.model.embed_tokens.weight
    assert shape["parameters"] == sum(p.numel() for p in student.parameters())
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        full = student(input_ids=ids).logits[:, -1]
        prefix = student(input_ids=ids[:, :-1], use_cache=True)
        assert len(prefix.past_key_values.layers) == 3
        step = student(input_ids=ids[:, -1:], past_key_values=prefix.past_key_values).logits[:, -1]
    assert torch.allclose(full, step, atol=1e-5)  # the key/value cache indexes the kept layers by their new index


def test_narrower_mlp_keeps_the_largest_neurons_in_order():
    from compression.engine.chat_student import build_chat_student, decoder_layers

    teacher = _llama(3, tied=False)
    student, shape = build_chat_student(teacher, None, 16)
    assert shape["layers_kept"] == 2 and shape["intermediate_size"] == 16 == student.config.intermediate_size
    source, narrowed = decoder_layers(teacher)[2].mlp, decoder_layers(student)[1].mlp
    gate, up, down = source.gate_proj.weight, source.up_proj.weight, source.down_proj.weight
    score = gate.norm(dim=1) * up.norm(dim=1) * down.norm(dim=0)
    keep = torch.sort(torch.topk(score.double(), 16).indices).values
    assert torch.equal(narrowed.gate_proj.weight, source.gate_proj.weight[keep])
    assert torch.equal(narrowed.down_proj.weight, source.down_proj.weight[:, keep])
    with torch.no_grad():
        assert student(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 64)
    with pytest.raises(EngineError, match="'intermediate_size' = 49"):
        build_chat_student(teacher, None, 49)


# ---- sampling and targets ------------------------------------------------------------------------------------


def test_greedy_decoding_matches_the_evaluation_runner(chat, loaded):
    from compression.engine.behaviour_distill import encode_prompts
    from compression.engine.sampling import decode
    from evaluations.engine.generate import ChatRunner
    from evaluations.engine.generation_profile import GenerationProfile

    rows = encode_prompts(chat, HELDOUT + STRESS[:2], SYSTEM)
    ours = decode(chat, rows, max_new_tokens=8, batch_size=3)
    runner = ChatRunner(loaded, GenerationProfile(system_prompt=SYSTEM, max_new_tokens=8, batch_size=3))
    theirs = runner.generate_batch(rows[:3]) + runner.generate_batch(rows[3:])
    assert [a.text for a in ours] == [text for text, _, _ in theirs]
    assert [len(a.ids) + (a.end_token is not None) for a in ours] == [count for _, count, _ in theirs]


def test_sampling_is_seeded_per_row_not_per_batch(chat):
    from compression.engine.behaviour_distill import encode_prompts
    from compression.engine.sampling import decode, row_seed

    rows = encode_prompts(chat, STRESS, None)
    seeds = [row_seed(0, 1, 0, p.prompt_id, 0) for p in STRESS]
    together = decode(chat, rows, max_new_tokens=10, batch_size=6, temperature=1.0, seeds=seeds)
    alone = [
        decode(chat, [r], max_new_tokens=10, batch_size=1, temperature=1.0, seeds=[s])[0]
        for r, s in zip(rows, seeds, strict=True)
    ]
    assert [a.ids for a in together] == [a.ids for a in alone]
    again = decode(chat, rows[::-1], max_new_tokens=10, batch_size=4, temperature=1.0, seeds=seeds[::-1])
    assert [a.ids for a in again[::-1]] == [a.ids for a in together]
    other = decode(chat, rows, max_new_tokens=10, batch_size=6, temperature=1.0, seeds=[s + 1 for s in seeds])
    assert [a.ids for a in other] != [a.ids for a in together]


def test_teacher_topk_is_the_softmax_top_k_at_answer_positions(chat):
    from compression.engine.sampling import answer_logits, teacher_topk

    rows = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    values, indices = teacher_topk([(chat, rows)], [2, 1], temperature=2.0, top_k=4)
    assert values.shape == (3, 4) and values.dtype == torch.float32 and indices.dtype == torch.int64
    with torch.no_grad():
        full = chat.model(input_ids=torch.tensor([rows[0]])).logits[0]
        alone = torch.softmax(full[3:5] / 2.0, dim=-1).topk(4)
    assert torch.allclose(values[:2], alone.values, atol=1e-5) and torch.equal(indices[:2], alone.indices)
    with torch.no_grad():
        assert answer_logits(chat, rows, [2, 1]).shape == (3, len(chat.tokenizer))
    averaged, _ = teacher_topk([(chat, rows), (chat, rows)], [2, 1], temperature=2.0, top_k=4)
    assert torch.allclose(averaged, values)


def test_judge_verdicts_are_checked():
    from compression.engine.behaviour_judging import behaviour_rates, is_accepted, judge_answers

    with pytest.raises(EngineError, match="returned 1 verdicts for 2 answers"):
        judge_answers(lambda prompts, answers: [("refusal", 1.0)], STRESS[:2], ["a", "b"])
    with pytest.raises(EngineError, match="'maybe'"):
        judge_answers(always("maybe", 0.5), STRESS[:1], ["a"])
    with pytest.raises(EngineError, match="not in \\[0, 1\\]"):
        judge_answers(always("refusal", 1.5), STRESS[:1], ["a"])
    harmful, safe = STRESS[0], STRESS[1]
    assert is_accepted(harmful, ("refusal", 0.6), 0.6) and not is_accepted(harmful, ("refusal", 0.6), 0.7)
    assert is_accepted(safe, ("compliance", 0.2), 0.8) and not is_accepted(safe, ("refusal", 0.9), 0.0)
    assert not is_accepted(harmful, ("degenerate", 1.0), 0.0)
    rates = behaviour_rates(HELDOUT, ["compliance", "compliance", "refusal", "degenerate"])
    assert rates == {
        "prompts": 4,
        "harmful": 2,
        "safe": 2,
        "harmful_compliance_rate": 0.5,
        "over_refusal_rate": 0.5,
        "degenerate_rate": 0.25,
        "failures": 3,
        "failure_ids": ["held:1", "held:2", "held:3"],
    }


# ---- the method through compress() --------------------------------------------------------------------------


def test_run_writes_a_loadable_smaller_chat_model_with_round_records(run, tiny_chat_dir):
    from compression.engine.chat import load_chat_model

    result, stages = run
    details = result.details
    assert details["student"]["layers_kept"] == 1 and details["student"]["kept_layer_indices"] == [0]
    assert result.parameter_count == details["student"]["parameters"] < result.source_parameter_count
    assert details["teachers"] == 1 and details["level"] == "token"
    student = load_chat_model(result.output_dir)
    assert student.model.config.num_hidden_layers == 1
    assert student.chat_template_digest == load_chat_model(tiny_chat_dir).chat_template_digest
    recipe = json.loads((result.output_dir / "recipe.json").read_text())
    assert recipe["method"] == "behavioural_distill" and recipe["model_kind"] == "causal-lm"
    assert (recipe["format"], recipe["level"], recipe["teachers"], recipe["layers_kept"]) == ("hf-dir", "token", 1, 1)
    first, second = details["rounds"]
    assert [first["round"], second["round"]] == [1, 2]
    assert first["stress_prompts"] == 6 and first["added_failures"] == 0
    assert second["added_failures"] == first["heldout"]["failures"]  # held-back ids never collide with stress ids
    assert second["stress_prompts"] == 6 + second["added_failures"]
    for record in details["rounds"]:
        assert sum(s["prompts"] for s in record["by_slice"].values()) == record["stress_prompts"]
        assert sum(s["accepted"] for s in record["by_slice"].values()) == record["accepted"]
        assert sum(s["dropped"] for s in record["by_slice"].values()) == record["dropped_prompts"]
        assert record["training_examples"] == record["accepted"]  # token level: one answer per kept prompt
        assert record["accepted"] + record["dropped_prompts"] == record["stress_prompts"]
        assert record["loss"]["first"] > 0 and record["steps"] == 2
        assert set(record["seconds"]) == {"sampling", "training", "evaluating", "targets"}
        assert record["heldout"]["prompts"] == 4 and len(record["data_digest"]) == 64
    assert details["acceptance"]["accepted"] == first["accepted"] + second["accepted"]
    fractions = [fraction for _, fraction in stages]
    assert fractions == sorted(fractions) and stages[0] == ("loading", 0.1) and stages[-1] == ("done", 1.0)
    assert all(0.1 < fraction < 0.95 for stage, fraction in stages if stage not in ("loading", "done"))
    named = {stage for stage, _ in stages}
    assert {"student", "sampling round 1", "training round 2", "evaluating round 2", "saving"} <= named


def test_same_seed_gives_byte_identical_weights(run, tiny_chat_dir, tmp_path):
    again = distill(tiny_chat_dir, tmp_path / "again")
    assert again.manifest_digest == run[0].manifest_digest
    assert [r["data_digest"] for r in again.details["rounds"]] == [r["data_digest"] for r in run[0].details["rounds"]]
    other = distill(tiny_chat_dir, tmp_path / "other", seed=4)
    assert other.manifest_digest != run[0].manifest_digest


def test_a_full_copy_student_starts_with_zero_kl(tiny_chat_dir, tmp_path):
    """The student reads what the teacher read: a full copy has the teacher's distributions (KL 0 at step 1)."""
    parameters = {"layers_kept": 2, "alpha": 1.0, "rounds": 1, "steps": 1}
    result = distill(tiny_chat_dir, tmp_path / "copy", parameters=parameters)
    assert abs(result.details["rounds"][0]["loss"]["first"]) < 1e-5


def test_failures_on_held_back_prompts_join_the_next_round(tiny_chat_dir, tmp_path):
    """A judge that finds compliance everywhere: harmful stress prompts are dropped (no refusal to learn from),
    safe ones kept; the student complies with the harmful held-back prompts, which join round 2."""
    result = distill(tiny_chat_dir, tmp_path / "loop", judge=always("compliance", 0.1))
    first, second = result.details["rounds"]
    assert first["dropped_prompt_ids"] == ["stress:0", "stress:2", "stress:4"]
    assert first["rejected"] == 3 * FAST["samples_per_prompt"] and first["accepted"] == 3
    assert first["heldout"]["harmful_compliance_rate"] == 1.0 and first["heldout"]["over_refusal_rate"] == 0.0
    assert first["heldout"]["failure_ids"] == ["held:1", "held:3"]
    assert second["added_failures"] == 2 and second["stress_prompts"] == 8
    assert second["dropped_prompt_ids"] == ["stress:0", "stress:2", "stress:4", "held:1", "held:3"]
    assert second["by_slice"]["adversarial"]["prompts"] == 2 + 2


def test_a_round_without_accepted_answers_trains_nothing(tiny_chat_dir, tmp_path):
    result = distill(tiny_chat_dir, tmp_path / "none", judge=always("degenerate", 0.0), parameters={"rounds": 1})
    (record,) = result.details["rounds"]
    assert (record["training_examples"], record["trained"], record["loss"], record["seconds_per_step"]) == (
        0,
        False,
        None,
        None,
    )
    assert record["dropped_prompts"] == 6 and record["heldout"]["degenerate_rate"] == 1.0


def test_cancelling_removes_the_output(tiny_chat_dir, tmp_path):
    def cancel(stage: str, fraction: float) -> None:
        if stage == "training round 1":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(tiny_chat_dir, tmp_path / "cancelled", progress=cancel)
    assert not (tmp_path / "cancelled").exists()


@pytest.fixture(scope="module")
def other_vocabulary(tiny_chat_dir, tmp_path_factory) -> Path:
    """The tiny model with two vocabulary entries swapped: another tokenizer for the same weights."""
    folder = tmp_path_factory.mktemp("vocab") / "model"
    shutil.copytree(tiny_chat_dir, folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    return folder


def test_token_level_needs_one_tokenizer_sequence_level_does_not(tiny_chat_dir, other_vocabulary, tmp_path):
    with pytest.raises(EngineError, match="use level 'sequence'") as caught:
        distill(tiny_chat_dir, tmp_path / "token", teachers=(other_vocabulary,))
    assert caught.value.code == "invalid_parameter"
    result = distill(
        tiny_chat_dir, tmp_path / "seq", teachers=(other_vocabulary,), parameters={"level": "sequence", "rounds": 1}
    )
    (record,) = result.details["rounds"]
    assert result.details["teachers"] == 2 and result.details["level"] == "sequence"
    assert record["training_examples"] == record["accepted"] > record["stress_prompts"] - record["dropped_prompts"]


def test_missing_behaviour_data_or_judge(tiny_chat_dir, tmp_path):
    with pytest.raises(EngineError, match="needs behaviour_data") as caught:
        distill(tiny_chat_dir, tmp_path / "a", data=None)
    assert caught.value.code == "empty_input"
    with pytest.raises(EngineError, match="needs a judge function"):
        distill(tiny_chat_dir, tmp_path / "b", judge=None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---- the safety teacher -------------------------------------------------------------------------------------


def test_safety_teacher_distils_the_system_prompt_and_caches(tiny_chat_dir, tmp_path):
    from compression.engine.chat import load_chat_model
    from compression.engine.safety_teacher import build_safety_teacher

    params = {"steps": 2, "max_new_tokens": 6, "batch_size": 4, "max_length": 64}
    arguments = {"system_prompt": SYSTEM, "prompts": STRESS, "judge": hash_judge, "heldout": HELDOUT}
    stages: list[tuple[str, float]] = []
    report = build_safety_teacher(
        tiny_chat_dir, **arguments, cache_dir=tmp_path, params=params, progress=lambda s, f: stages.append((s, f))
    )
    assert not report.cache_hit and report.model_dir == tmp_path / report.cache_key / "model"
    assert set(report.before) == {"base_without_system_prompt", "base_with_system_prompt"}
    assert set(report.after) == {"distilled_without_system_prompt"}
    assert report.after["distilled_without_system_prompt"]["prompts"] == 4
    assert report.steps == 2 and report.params["alpha"] == 1.0 and report.params["temperature"] == 1.0
    assert report.accepted == report.rounds[0]["accepted"] > 0
    assert report.rounds[0]["loss"]["first"] > 1e-4  # the student reads no system prompt: it starts off the teacher
    assert [f for _, f in stages] == sorted(f for _, f in stages)
    model = load_chat_model(report.model_dir).model
    assert model.config.num_hidden_layers == 2
    assert json.loads(json.dumps(report.to_dict()))["cache_key"] == report.cache_key
    again = build_safety_teacher(tiny_chat_dir, **arguments, cache_dir=tmp_path, params=params)
    assert again.cache_hit and again.cache_key == report.cache_key and again.after == report.after
    changed = {**arguments, "system_prompt": "Be careful."}
    with pytest.raises(EngineError, match="'steps'"):
        build_safety_teacher(tiny_chat_dir, **changed, cache_dir=tmp_path, params={"steps": 0})
    assert sorted(p.name for p in tmp_path.iterdir()) == [report.cache_key]
