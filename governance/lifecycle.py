"""The release state machine as data: which status may follow which, and from which statuses each decision
may be taken. `governance.services.state.transition` refuses a move the table does not allow;
`governance.selectors.release_allowed_decisions` and the decision services read the same table."""

from governance.models import TERMINAL_RELEASE_STATUSES, DecisionKind, ReleaseStatus

S = ReleaseStatus

# A release can be halted in any status but a terminal one (and not twice); resuming returns it to that status.
HALTABLE = tuple(s for s in S.values if s not in (*TERMINAL_RELEASE_STATUSES, S.HALTED))

TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.EVALUATING, S.HALTED}),
    S.EVALUATING: frozenset({S.DRAFT, S.IN_REVIEW, S.AWAITING_DECISION, S.HALTED}),
    S.IN_REVIEW: frozenset({S.AWAITING_DECISION, S.HALTED}),
    S.AWAITING_DECISION: frozenset({S.APPROVED, S.REJECTED, S.HALTED}),
    # approved -> awaiting decision: the candidate changed after approval and the approvals are void.
    S.APPROVED: frozenset({S.ROLLING_OUT, S.AWAITING_DECISION, S.HALTED}),
    S.ROLLING_OUT: frozenset({S.RELEASED, S.ROLLED_BACK, S.HALTED}),
    S.RELEASED: frozenset({S.ROLLED_BACK, S.HALTED}),
    S.HALTED: frozenset(HALTABLE),
    S.REJECTED: frozenset(),
    S.ROLLED_BACK: frozenset(),
}

# The statuses each decision may be taken from (in the order the refusal message names them).
DECISION_FROM: dict[str, tuple[str, ...]] = {
    DecisionKind.APPROVE: (S.AWAITING_DECISION,),
    DecisionKind.REJECT: (S.AWAITING_DECISION,),
    DecisionKind.HALT: HALTABLE,
    DecisionKind.RESUME: (S.HALTED,),
    DecisionKind.ROLL_BACK: (S.ROLLING_OUT, S.RELEASED),
}


def allowed(current: str, to: str) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def decisions_from(status: str) -> tuple[str, ...]:
    """The decisions the state machine allows in this status (who may take them is the caller's question)."""
    return tuple(kind for kind, sources in DECISION_FROM.items() if status in sources)
