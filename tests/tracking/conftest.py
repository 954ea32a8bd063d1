"""A small world for external runs: two engineers, each with an experiment on a base artifact written straight to
the database (no model files: tracking never opens them), an officer, and helpers to sign DSSE envelopes."""

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_artifact(owner, name: str, parent=None):
    from compression.models import ModelArtifact

    return ModelArtifact.objects.create(
        name=name,
        digest=_digest(name),
        format="hf-dir",
        size_bytes=10,
        parent=parent,
        manifest=[{"path": "config.json", "sha256": _digest(name + "/c"), "size": 10}],
        labels=["normal", "offensive"],
        created_by=owner,
    )


@pytest.fixture
def world(db, make_user, officer):
    from compression.services.experiments import experiment_create

    eve, oscar, admin = make_user("eve", "engineer"), make_user("oscar", "engineer"), make_user("adm", "admin")
    experiments, artifacts = {}, {}
    for user in (eve, oscar):
        base = make_artifact(user, f"base-{user.username}")
        artifacts[user.username] = {"base": base, "output": make_artifact(user, f"gptq-{user.username}", parent=base)}
        experiments[user.username] = experiment_create(
            actor=user, name=f"exp {user.username}", base_artifact_id=base.pk, unsafe_labels=["offensive"]
        )
    return {
        "eve": eve,
        "oscar": oscar,
        "officer": officer,
        "admin": admin,
        "experiments": experiments,
        "artifacts": artifacts,
    }


@pytest.fixture
def eve_run(world):
    from tracking.services.runs import external_run_create

    return external_run_create(
        actor=world["eve"],
        experiment_id=world["experiments"]["eve"].pk,
        method="GPTQ 4-bit (AutoGPTQ)",
        input_artifact_ids=[world["artifacts"]["eve"]["base"].pk],
    )


@pytest.fixture
def oscar_run(world):
    from tracking.services.runs import external_run_create

    return external_run_create(actor=world["oscar"], experiment_id=world["experiments"]["oscar"].pk, method="AWQ")


def new_key() -> tuple[Ed25519PrivateKey, str]:
    """A fresh Ed25519 key and its public half as PEM."""
    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, pem.decode()


def statement(subject_sha256: str = "0" * 64) -> dict:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": subject_sha256}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.org/gptq"}},
    }
