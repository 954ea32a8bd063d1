"""A release whose candidate was made outside SafeShrink: an external run with a real (int8) output artifact,
reporting whatever metrics a test wants, and helpers shared by the governance, exports and web tests."""

from compression.services.experiments import experiment_create
from governance.models import Release
from governance.services.candidates import release_create_from_external_run
from governance.services.releases import release_start_evaluation
from tracking.models import ExternalRun
from tracking.services.runs import external_run_create, external_run_finish, external_run_log


def int8_output(engineer, base_artifact, tmp_path):
    """The tiny model quantized outside SafeShrink's runs (the engine called directly), then uploaded."""
    from compression.engine import CompressionRequest, compress
    from compression.services.artifacts import artifact_register

    out = compress(CompressionRequest("dynamic_int8", base_artifact_dir(base_artifact), tmp_path / "int8", {}, 0))
    return artifact_register(
        actor=engineer, name="int8 made elsewhere", path=str(out.output_dir), parent_id=base_artifact.pk
    )


def base_artifact_dir(artifact):
    from compression.services.artifacts import artifact_path

    return artifact_path(artifact)


def external_run(engineer, experiment, *, output=None, inputs=(), metrics=None, finish=True) -> ExternalRun:
    run = external_run_create(
        actor=engineer,
        experiment_id=experiment.pk,
        method="int8 via my own script",
        known_method="dynamic_int8",
        parameters={"bits": 8},
        tool_versions={"torch": "2.5"},
        hardware={"gpu": "none"},
        seeds=[7],
        code_reference={"url": "https://example.org/repo", "commit": "abc123"},
        input_artifact_ids=[a.pk for a in inputs],
    )
    if metrics:
        external_run_log(
            actor=engineer,
            run_id=run.pk,
            metrics=[{"key": k, "value": v, "step": s} for k, values in metrics.items() for s, v in enumerate(values)],
            params=[{"key": "calibration", "value": "none"}],
        )
    if finish:
        run = external_run_finish(actor=engineer, run_id=run.pk, output_artifact_id=output.pk if output else None)
    return run


def experiment_for(engineer, base_artifact, name="external"):
    return experiment_create(
        actor=engineer, name=name, base_artifact_id=base_artifact.pk, unsafe_labels=["hatespeech", "offensive"]
    )


def evaluated_external_release(*, engineer, base_artifact, suite, policy, tmp_path, metrics=None) -> Release:
    """An external run's output released, evaluated and gated (Celery runs eagerly in tests)."""
    experiment = experiment_for(engineer, base_artifact)
    output = int8_output(engineer, base_artifact, tmp_path)
    run = external_run(
        engineer, experiment, output=output, inputs=[base_artifact], metrics=metrics or {"accuracy": [0.5, 1.0]}
    )
    release = release_create_from_external_run(
        actor=engineer, external_run_id=run.pk, suite_version_id=suite.pk, policy_id=policy.pk
    )
    release_start_evaluation(actor=engineer, release_id=release.pk)
    release.refresh_from_db()
    return release
