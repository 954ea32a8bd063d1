"""A chat model's generation settings: how it is served, so how it is evaluated (pure Python, no torch).

The system prompt, the limit on new tokens, the stop strings and the decoding are part of what a chat model
*is* as deployed: the same weights with another system prompt refuse differently. An experiment records them
for its base model; every evaluation's configuration (and so its digest) carries them, with the chat
template's digest (compression.engine.kinds). The deployment conditions (batch size, threads, device,
instruction sets) are the deployment profile's (evaluations.engine.profile); evaluations.engine.
generation_profile joins both for the engine.

Only greedy decoding is offered: an evaluation is evidence only if it can be repeated (see
evaluations.engine.generation_profile.Decoding).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "GENERATION_SETTINGS",
    "MAX_NEW_TOKENS_LIMIT",
    "MAX_STOP_STRINGS",
    "MAX_STOP_STRING_CHARS",
    "MAX_SYSTEM_PROMPT_CHARS",
    "DECODINGS",
    "generation_settings_problems",
]

MAX_NEW_TOKENS_LIMIT = 512  # an evaluation answer, not an essay: refusals show in the first sentences
DEFAULT_MAX_NEW_TOKENS = 64
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_CHARS = 64
MAX_SYSTEM_PROMPT_CHARS = 8000
DECODINGS = ("greedy",)
GENERATION_SETTINGS = ("system_prompt", "max_new_tokens", "stop_strings", "decoding")
PREFIX = "generation."


def _stop_strings_ok(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) <= MAX_STOP_STRINGS
        and all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_STRING_CHARS for s in value)
        and len(set(value)) == len(value)
    )


SETTING_CHECKS: dict[str, tuple[Any, str]] = {
    "system_prompt": (
        lambda v: v is None or (isinstance(v, str) and 0 < len(v) <= MAX_SYSTEM_PROMPT_CHARS),
        f"null or a non-empty text of at most {MAX_SYSTEM_PROMPT_CHARS} characters.",
    ),
    "max_new_tokens": (
        lambda v: type(v) is int and 1 <= v <= MAX_NEW_TOKENS_LIMIT,
        f"An integer from 1 to {MAX_NEW_TOKENS_LIMIT} (the limit on new tokens per answer).",
    ),
    "stop_strings": (
        _stop_strings_ok,
        f"A list of at most {MAX_STOP_STRINGS} distinct non-empty strings of at most {MAX_STOP_STRING_CHARS} "
        "characters.",
    ),
    "decoding": (
        lambda v: isinstance(v, str) and v in DECODINGS,
        "'greedy': evaluations decode greedily so that they can be repeated (sampling is not offered).",
    ),
}


def short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def generation_settings_problems(data: Any) -> dict[str, list[str]]:
    """Every problem of the generation settings ``data`` (a dict; missing fields take their defaults), keyed
    ``generation.<field>``; {} when valid. Unknown fields are problems."""
    if not isinstance(data, dict):
        return {"generation": [f"An object with some of: {', '.join(GENERATION_SETTINGS)}."]}
    problems: dict[str, list[str]] = {}
    for key in data:
        if key not in SETTING_CHECKS:
            problems[PREFIX + str(key)] = [
                f"Not a generation setting (one of {', '.join(GENERATION_SETTINGS)}); batch size, threads and "
                "device are the deployment profile's."
            ]
    for key, (ok, expected) in SETTING_CHECKS.items():
        if key in data:
            try:
                valid = bool(ok(data[key]))
            except TypeError:
                valid = False
            if not valid:
                problems[PREFIX + key] = [f"{expected} Got {short(data[key])}."]
    return problems


def generation_settings(data: dict | None) -> dict[str, Any]:
    """The settings with defaults filled in (call generation_settings_problems first)."""
    data = data or {}
    return {
        "system_prompt": data.get("system_prompt"),
        "max_new_tokens": data.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        "stop_strings": list(data.get("stop_strings", [])),
        "decoding": data.get("decoding", DECODINGS[0]),
    }
