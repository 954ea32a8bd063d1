"""The demo's default taxonomy and threshold policy, as data (see ARCHITECTURE.md)."""

DEFAULT_TAXONOMY = {
    "name": "Safety classifier risks",
    "description": "Failure modes of a compressed safety (hate and harm) classifier.",
    "failure_modes": [
        {
            "code": "missed-harm",
            "category": "Harmful content",
            "title": "Missed hateful or harmful content",
            "severity": 4,
            "likelihood": "likely",
            "measures": [
                {"metric": "unsafe_recall", "group": "overall", "worse": "lower"},
                {"metric": "unsafe_recall", "group": "slice:adversarial", "worse": "lower"},
            ],
            "regulatory_refs": [
                "EU AI Act Art. 9 (risk management)",
                "EU AI Act Art. 15 (accuracy, robustness)",
                "NIST AI RMF MEASURE 2.6",
            ],
        },
        {
            "code": "over-flagging",
            "category": "Over-blocking",
            "title": "Over-flagging of edge cases",
            "severity": 2,
            "likelihood": "possible",
            "measures": [{"metric": "benign_fpr", "group": "slice:edge", "worse": "higher"}],
            "regulatory_refs": ["EU AI Act Art. 15", "NIST AI RMF MEASURE 2.11 (fairness)"],
        },
        {
            "code": "decision-drift",
            "category": "Behaviour change",
            "title": "Decisions changed by compression",
            "severity": 2,
            "likelihood": "likely",
            "measures": [{"metric": "flip_rate", "group": "overall", "worse": "higher"}],
            "regulatory_refs": ["EU AI Act Art. 9", "NIST AI RMF MANAGE 2.2"],
        },
        {
            "code": "subgroup-disparity",
            "category": "Fairness",
            "title": "Subgroup disparity in missed harm",
            "severity": 3,
            "likelihood": "possible",
            "measures": [
                {"metric": "fnr_gap", "group": "overall", "worse": "higher"},
                {"metric": "fpr_gap", "group": "overall", "worse": "higher"},
            ],
            "regulatory_refs": ["EU AI Act Art. 10 (data and bias)", "NIST AI RMF MEASURE 2.11"],
        },
        {
            "code": "calibration-drift",
            "category": "Calibration",
            "title": "Calibration drift",
            "severity": 2,
            "likelihood": "likely",
            "measures": [{"metric": "ece", "group": "overall", "worse": "higher"}],
            "regulatory_refs": ["EU AI Act Art. 15", "NIST AI RMF MEASURE 2.5"],
        },
        {
            "code": "adversarial-spelling",
            "category": "Robustness",
            "title": "Adversarial-spelling fragility",
            "severity": 3,
            "likelihood": "likely",
            "measures": [{"metric": "consistency", "group": "slice:adversarial", "worse": "lower"}],
            "regulatory_refs": ["EU AI Act Art. 15(4) (robustness)", "NIST AI RMF MEASURE 2.7"],
        },
        {
            "code": "latency-memory",
            "category": "Operations",
            "title": "Latency and memory budgets",
            "severity": 1,
            "likelihood": "possible",
            "measures": [{"metric": "example_latency_p95_ratio", "group": "overall", "worse": "higher"}],
            "regulatory_refs": ["NIST AI RMF MANAGE 2.4"],
        },
        {
            "code": "accuracy-loss",
            "category": "Behaviour change",
            "title": "Accuracy loss on routine traffic",
            "severity": 3,
            "likelihood": "possible",
            "measures": [{"metric": "accuracy", "group": "slice:routine", "worse": "lower"}],
            "regulatory_refs": ["EU AI Act Art. 15"],
        },
    ],
}

DEFAULT_POLICY_RULES = [
    {
        "code": "routine-accuracy",
        "title": "Routine accuracy change",
        "failure_mode_code": "accuracy-loss",
        "metric": "accuracy",
        "group": "slice:routine",
        "kind": "delta",
        "bound": "ci_low",
        "higher_is_better": True,
        "green_limit": -0.03,
        "red_limit": -0.08,
    },
    {
        "code": "adversarial-recall",
        "title": "Adversarial unsafe recall change",
        "failure_mode_code": "missed-harm",
        "metric": "unsafe_recall",
        "group": "slice:adversarial",
        "kind": "delta",
        "bound": "ci_low",
        "higher_is_better": True,
        "green_limit": -0.02,
        "red_limit": -0.10,
    },
    {
        "code": "overall-recall",
        "title": "Overall unsafe recall change",
        "failure_mode_code": "missed-harm",
        "metric": "unsafe_recall",
        "group": "overall",
        "kind": "delta",
        "bound": "ci_low",
        "higher_is_better": True,
        "green_limit": -0.03,
        "red_limit": -0.08,
    },
    {
        "code": "edge-overflagging",
        "title": "Edge-case over-flagging change",
        "failure_mode_code": "over-flagging",
        "metric": "benign_fpr",
        "group": "slice:edge",
        "kind": "delta",
        "bound": "ci_high",
        "higher_is_better": False,
        "green_limit": 0.05,
        "red_limit": 0.12,
    },
    {
        "code": "subgroup-fnr-gap",
        "title": "Change in the subgroup miss-rate gap",
        "failure_mode_code": "subgroup-disparity",
        "metric": "fnr_gap",
        "group": "overall",
        "kind": "delta",
        "bound": "ci_high",
        "higher_is_better": False,
        "green_limit": 0.05,
        "red_limit": 0.15,
    },
    {
        "code": "calibration-ece",
        "title": "Calibration error change",
        "failure_mode_code": "calibration-drift",
        "metric": "ece",
        "group": "overall",
        "kind": "delta",
        "bound": "ci_high",
        "higher_is_better": False,
        "green_limit": 0.03,
        "red_limit": 0.08,
    },
    {
        "code": "spelling-consistency",
        "title": "Consistency on perturbed spellings",
        "failure_mode_code": "adversarial-spelling",
        "metric": "consistency",
        "group": "slice:adversarial",
        "kind": "delta",
        "bound": "ci_low",
        "higher_is_better": True,
        "green_limit": -0.03,
        "red_limit": -0.10,
    },
    {
        "code": "latency-p95",
        "title": "Per-example p95 latency, candidate / baseline",
        "failure_mode_code": "latency-memory",
        "metric": "example_latency_p95_ratio",
        "group": "overall",
        "kind": "absolute",
        "bound": "point",
        "higher_is_better": False,
        "green_limit": 1.0,
        "red_limit": 1.5,
    },
    {
        "code": "flip-rate",
        "title": "Share of decisions flipped",
        "failure_mode_code": "decision-drift",
        "metric": "flip_rate",
        "group": "overall",
        "kind": "absolute",
        "bound": "point",
        "higher_is_better": False,
        "green_limit": 0.05,
        "red_limit": 0.15,
    },
    {
        "code": "decision-instability",
        "title": "Candidate decisions that move with the batch",
        "failure_mode_code": "decision-drift",
        "metric": "decision_instability",
        "group": "overall",
        "kind": "absolute",
        "bound": "point",
        "higher_is_better": False,
        "green_limit": 0.01,
        "red_limit": 0.05,
    },
]

MITIGATIONS = [
    {
        "code": "targeted-finetuning",
        "title": "Targeted fine-tuning on the failing slice",
        "kind": "targeted_finetuning",
        "description": "Fine-tune the compressed model on the flipped and failing examples (and more like them), then "
        "re-evaluate on a held-out split of the same slice.",
        "failure_mode_codes": ["missed-harm", "accuracy-loss", "adversarial-spelling"],
    },
    {
        "code": "runtime-guard",
        "title": "Runtime guard on uncertain decisions",
        "kind": "runtime_guard",
        "description": "Route inputs whose unsafe probability falls in an uncertainty band to the uncompressed model.",
        "failure_mode_codes": ["missed-harm", "calibration-drift", "decision-drift"],
    },
    {
        "code": "human-review-routing",
        "title": "Route a subgroup to human review",
        "kind": "human_review",
        "description": "Send content targeting the affected subgroups to human moderators until the gap closes.",
        "failure_mode_codes": ["subgroup-disparity", "over-flagging"],
    },
    {
        "code": "staged-rollout",
        "title": "Staged rollout with canaries",
        "kind": "staged_rollout",
        "description": "Roll out at 1%, 5%, 25%, 100% with monitoring of flagged rates between stages.",
        "failure_mode_codes": ["decision-drift", "latency-memory", "over-flagging"],
    },
]

DEMO_USERS = [
    # username, role, password: printed by `make run`. Local demo only.
    ("engineer", "engineer", "engineer-demo-pass"),
    ("officer", "officer", "officer-demo-pass"),
    ("officer2", "officer", "officer2-demo-pass"),
    ("reviewer", "reviewer", "reviewer-demo-pass"),
    ("reviewer2", "reviewer", "reviewer2-demo-pass"),
    ("regulator", "regulator", "regulator-demo-pass"),
    ("admin", "admin", "admin-demo-pass"),
]

# username, risk tier, level: the demo officers' authorities.
DEMO_AUTHORITIES = [
    ("officer", "low", 2),
    ("officer", "medium", 2),
    ("officer", "high", 1),
    ("officer2", "low", 1),
    ("officer2", "medium", 1),
    ("officer2", "high", 2),
]


def demo_outcome(release: dict, *, url: str, escalations: list[dict]) -> list[str]:
    """What `make run` prints once the demo release has left `evaluating`: the gate, the zone table in a few
    lines and what each role should do next. The gate depends on the machine (int8 kernels differ between
    CPUs), so every outcome is a normal end of the demo, not an error."""
    page = f"{url}/releases/{release['id']}/"
    status, zone = release["status"], (release.get("gate_zone") or "").lower()
    if status == "draft":
        return [
            f"release {release['id']} went back to draft: its evaluation failed ({release.get('failure_reason')}).",
            "  see var/log/worker.log; the release page has the details:",
            f"  {page}",
        ]
    verdicts = release.get("gate") or []
    counts = {z: sum(1 for v in verdicts if v["zone"] == z) for z in ("green", "amber", "red")}
    lines = [
        f"gate {zone.upper() or '?'}: {counts['green']} green, {counts['amber']} amber, {counts['red']} red "
        f"(status: {status})"
    ]
    for verdict in verdicts:
        if verdict["zone"] != "green":
            value = "no evidence" if verdict["value"] is None else f"{verdict['value']:+.4f}"
            lines.append(f"  {verdict['zone']:>5}  {verdict['title']}: {value}")
    if counts["green"]:
        lines.append(f"  green  {counts['green']} other rule(s) within their limits")
    if status == "in_review":
        lines += [
            "next: AMBER asks for blind expert review. Sign in as reviewer and reviewer2 and label the flipped",
            f"  examples at {url}/reviews/; then officer decides (approve, reject, halt) at {page}",
        ]
    elif zone == "red":
        opened = [e for e in escalations if e.get("status") == "open"]
        which = ", ".join(f"#{e['id']} (deadline {e['deadline']})" for e in opened) or "see the release page"
        lines += [
            f"next: RED opened an escalation {which}. Sign in as officer, resolve it with a note on",
            f"  {page}, then approve, reject or halt; approval is blocked while it is open",
        ]
    elif status == "awaiting_decision" and zone == "amber":
        lines += [
            "next: AMBER, but no flipped example holds when the batches are recomposed, so there is nothing for",
            f"  blind review. Sign in as officer and decide (approve, reject, halt) at {page}",
        ]
    elif status == "awaiting_decision":
        lines += [f"next: GREEN. Sign in as officer and approve (or reject, halt) at {page}"]
    else:
        lines += [f"next: the release is {status}; see {page}"]
    return lines
