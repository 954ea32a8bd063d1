"""The fixed vocabulary of ledger actions. An append with any other action is a bug."""

ACTIONS = frozenset(
    {
        "user.created",
        "artifact.registered",
        "experiment.created",
        "run.requested",
        "run.started",
        "run.progress",
        "run.succeeded",
        "run.failed",
        "run.cancelled",
        "suite.imported",
        "evaluation.requested",
        "evaluation.succeeded",
        "evaluation.failed",
        "comparison.computed",
        "taxonomy.published",
        "policy.published",
        "release.created",
        "release.evaluation_started",
        "release.gated",
        "release.approved",
        "release.rejected",
        "release.halted",
        "release.resumed",
        "release.failed",
        "access.denied",
    }
)
