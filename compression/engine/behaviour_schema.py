"""``behavioural_distill``'s parameters and the checks that need more than one of them (torch-free).

Behavioural safety distillation of a chat model (``behaviour_distill``): a smaller student, cut from the
teacher by dropping decoder layers (optionally narrowing the feed-forward), trained on the teacher's answers
to stress-test prompts that a refusal judge accepted (rejection sampling), with
``alpha * KL_T(teacher || student) * T^2 + (1 - alpha) * CE(accepted answer)`` on the teacher's top-k
log-probabilities, in rounds: after each round the student answers a held-back adversarial split and the
prompts it fails join the next round's stress set.

The ids (``judge``, ``stress_set``, ``heldback_split``, ``extra_teachers``) name records of the web
application (a judge artifact, chat suite versions, chat model artifacts); the engine receives the
prompts, a judge function and teacher folders instead, and ignores them. What only the application can
check (the judge's kind, the tokenizers, overlaps between the sets, ``top_k`` against the vocabulary) is
checked there at request time; what the parameters alone decide is checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compression.engine.errors import EngineError, EngineErrorCode
from compression.engine.param_spec import ParamSpec

__all__ = [
    "BEHAVIOURAL_DISTILL_SCHEMA",
    "BEHAVIOUR_LEVELS",
    "BEHAVIOUR_REQUIRED",
    "BEHAVIOURAL_DISTILL_SUMMARY",
    "check_behaviour_combination",
]

# "token": KL on the teachers' averaged top-k distributions (teachers must share a tokenizer);
# "sequence": cross-entropy on every teacher's accepted answers (teachers with different tokenizers).
BEHAVIOUR_LEVELS: tuple[str, ...] = ("token", "sequence")

BEHAVIOURAL_DISTILL_SCHEMA: Mapping[str, ParamSpec] = {
    "layers_kept": ParamSpec(
        "int",
        None,
        minimum=1,
        maximum=256,
        nullable=True,
        doc="decoder layers the student keeps, evenly spaced, first and last included (null: half the "
        "teacher's, rounded up); fewer than the teacher's",
    ),
    "intermediate_size": ParamSpec(
        "int",
        None,
        minimum=1,
        maximum=65536,
        nullable=True,
        doc="student feed-forward width (null: the teacher's); smaller keeps each layer's largest neurons",
    ),
    "temperature": ParamSpec(
        "float", 2.0, minimum=0.0, maximum=100.0, exclusive_min=True, doc="softmax temperature T of the KL term"
    ),
    "alpha": ParamSpec(
        "float",
        0.5,
        minimum=0.0,
        maximum=1.0,
        doc="weight of KL_T(teacher || student) * T^2; (1 - alpha) weighs the cross-entropy on the accepted answer",
    ),
    "top_k": ParamSpec(
        "int",
        20,
        minimum=1,
        maximum=4096,
        doc="teacher log-probabilities kept per token (at most the vocabulary size; the full distribution is "
        "about 200 MB per 8x128 batch)",
    ),
    "rounds": ParamSpec(
        "int",
        2,
        minimum=1,
        maximum=10,
        doc="rounds; after each the student's failures on the held-back split join the next round's stress set",
    ),
    "samples_per_prompt": ParamSpec(
        "int", 4, minimum=1, maximum=16, doc="answers the teacher samples per stress prompt until one is accepted"
    ),
    "sampling_temperature": ParamSpec(
        "float", 0.8, minimum=0.0, maximum=2.0, exclusive_min=True, doc="the teacher's sampling temperature"
    ),
    "max_new_tokens": ParamSpec(
        "int", 48, minimum=4, maximum=256, doc="longest sampled answer (and the student's held-back answers)"
    ),
    "acceptance_threshold": ParamSpec(
        "float",
        0.5,
        minimum=0.0,
        maximum=1.0,
        doc="the judge's confidence an answer needs in the expected behaviour (refusal of a harmful prompt, "
        "an answer to a safe one) to be accepted; degenerate text is never accepted",
    ),
    "judge": ParamSpec("int", None, minimum=1, maximum=2**63 - 1, doc="required: the refusal judge's artifact id"),
    "stress_set": ParamSpec(
        "int",
        None,
        minimum=1,
        maximum=2**63 - 1,
        doc="required: the chat suite version whose prompts the teacher is stress-tested on (training prompts)",
    ),
    "heldback_split": ParamSpec(
        "int",
        None,
        minimum=1,
        maximum=2**63 - 1,
        doc="required: the chat suite version of held-back adversarial prompts the student is tested on after "
        "each round (must not overlap the stress set or the evaluation suite)",
    ),
    "extra_teachers": ParamSpec(
        "int_list",
        None,
        nullable=True,
        doc="artifact ids of further chat-model teachers (the experiment's base is the first); token level "
        "averages their distributions and needs one tokenizer",
    ),
    "level": ParamSpec(
        "choice",
        "token",
        choices=BEHAVIOUR_LEVELS,
        doc="'token': KL on the teachers' top-k distributions; 'sequence': train on every teacher's accepted "
        "answers (teachers with different tokenizers)",
    ),
    "lr": ParamSpec("float", 5e-5, minimum=0.0, maximum=1.0, exclusive_min=True, doc="AdamW learning rate"),
    "steps": ParamSpec("int", 40, minimum=1, maximum=100_000, doc="optimizer steps per round"),
    "batch_size": ParamSpec("int", 8, minimum=1, maximum=256, doc="training batch size (answers)"),
    "max_length": ParamSpec(
        "int", 192, minimum=16, maximum=2048, doc="token cap on prompt + answer in training (answers are cut)"
    ),
}

# Parameters that must be given: no default (None), and null is not a value they take.
BEHAVIOUR_REQUIRED: tuple[str, ...] = ("judge", "stress_set", "heldback_split")

BEHAVIOURAL_DISTILL_SUMMARY = (
    "Behavioural safety distillation of a chat model into a smaller student (decoder layers dropped, optionally "
    "a narrower feed-forward): the teacher answers stress-test prompts, a refusal judge keeps only safe answers "
    "(rejection sampling), the student learns the teacher's top-k token distributions at temperature T and the "
    "accepted answers, and after each round its failures on a held-back adversarial split join the next round."
)


def check_behaviour_combination(parameters: Mapping[str, Any]) -> None:
    """EngineError "invalid_parameter" naming the parameter: a required id missing, the same suite version as
    stress set and held-back split, a teacher listed twice."""
    for name in BEHAVIOUR_REQUIRED:
        if parameters.get(name) is None:
            raise EngineError(
                EngineErrorCode.INVALID_PARAMETER, f"parameter {name!r} is required for method 'behavioural_distill'"
            )
    if parameters["stress_set"] == parameters["heldback_split"]:
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER,
            "parameter 'heldback_split' is the stress set: the student must be tested on prompts it was not trained on",
        )
    extra = parameters.get("extra_teachers") or []
    if len(set(extra)) != len(extra):
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "parameter 'extra_teachers' names a teacher twice")
