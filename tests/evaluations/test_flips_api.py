"""Issue 12 (API): a comparison's flips say whether they hold in both passes for both models (`stable`) and
filter on it (`?stable=true|false`, a 400 naming the parameter otherwise, declared in the OpenAPI schema);
an evaluation shows its stability pass and a comparison its results (stability included) as computed.

The records are written straight to the database (no model, no evaluation): what is tested is the API over
them, not the stability pass itself (tests/evaluations/test_predict.py and test_services.py cover that)."""

import hashlib

import pytest

from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

# example position -> Flip.stable in the comparison with a stability pass, and each flip's direction
STABILITY = {0: True, 1: False, 2: True, 3: False, 4: True}
TO_SAFE = {3, 4}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _stability_summary(n: int, unstable: int) -> dict:
    share = {"n": n, "unstable": unstable, "unstable_rate": unstable / n}
    return {**share, "groups": {"overall": share}}


@pytest.fixture
def world(make_user, make_officer):
    from compression.models import ModelArtifact
    from evaluations.models import Comparison, ComparisonStatus, EvaluationRun, Flip, FlipDirection
    from evaluations.services.suites import ExampleRow, suite_version_import

    engineer = make_user("eng", "engineer")
    officer = make_officer("off")
    base, candidate = (
        ModelArtifact.objects.create(
            name=name, digest=_digest(name), format="hf-dir", size_bytes=1, manifest=[], created_by=engineer
        )
        for name in ("base", "candidate")
    )
    rows = [
        ExampleRow(
            text=f"example {i}",
            label="offensive" if i % 2 else "normal",
            slice="routine",
            external_id=str(i),
            line=i + 1,
        )
        for i in range(len(STABILITY))
    ]
    version = suite_version_import(
        actor=engineer, suite_name="flips", rows=rows, unsafe_labels=["offensive"], safe_labels=["normal"]
    )
    examples = list(version.examples.order_by("position"))
    run_stability = {"seed": 0, "method": "batches recomposed", "seconds": 0.1, **_stability_summary(5, 2)}

    def run(artifact, stability, label):
        return EvaluationRun.objects.create(
            artifact=artifact,
            suite_version=version,
            config={"stability_seed": 0},
            config_digest=_digest(f"{artifact.name} {label}"),
            status="succeeded",
            stability=stability,
        )

    unstable = sum(1 for held in STABILITY.values() if not held)
    results = {
        "groups": {},
        "stability": {
            "method": "batches recomposed",
            "seed": 0,
            "baseline": _stability_summary(5, 1),
            "candidate": _stability_summary(5, 2),
            "flips": {"stable": len(STABILITY) - unstable, "unstable": unstable},
        },
        "runtime": {},
    }
    comparison = Comparison.objects.create(
        baseline_run=run(base, run_stability, "new"),
        candidate_run=run(candidate, run_stability, "new"),
        status=ComparisonStatus.DONE,
        statistics={"stable_test": "McNemar exact on stable flips only"},
        results=results,
        flip_count=len(STABILITY),
    )
    old = Comparison.objects.create(
        baseline_run=run(base, None, "old"),
        candidate_run=run(candidate, None, "old"),
        status=ComparisonStatus.DONE,
        statistics={"stable_test": None},
        results={"groups": {}, "stability": None, "runtime": {}},
        flip_count=len(STABILITY),
    )
    for target, stable_of in ((comparison, STABILITY.get), (old, lambda position: None)):
        Flip.objects.bulk_create(
            Flip(
                comparison=target,
                example=example,
                baseline_prob=0.2,
                candidate_prob=0.8,
                direction=FlipDirection.TO_SAFE if example.position in TO_SAFE else FlipDirection.TO_UNSAFE,
                candidate_correct=bool(example.is_unsafe),
                stable=stable_of(example.position),
            )
            for example in examples
        )
    return {"api": api_client_for(officer), "comparison": comparison, "old": old, "examples": examples}


def _flips(api, comparison, query: str = "") -> list[dict]:
    response = api.get(f"/api/comparisons/{comparison.pk}/flips/{query}")
    assert response.status_code == 200, response.content[:300]
    return response.json()["results"]


def test_each_flip_says_whether_it_is_stable(world):
    by_position = {f["example"]["position"]: f["stable"] for f in _flips(world["api"], world["comparison"])}
    assert by_position == STABILITY
    assert {f["stable"] for f in _flips(world["api"], world["old"])} == {None}


@pytest.mark.parametrize("value, held", [("true", True), ("false", False)])
def test_the_stable_filter_keeps_only_those_flips(world, value, held):
    positions = [f["example"]["position"] for f in _flips(world["api"], world["comparison"], f"?stable={value}")]
    assert positions == [p for p, stable in STABILITY.items() if stable is held]
    assert positions  # both kinds exist, so the filter has something to keep and something to drop
    # A comparison without a stability pass has no flip either way.
    assert _flips(world["api"], world["old"], f"?stable={value}") == []


def test_the_stable_filter_combines_with_the_others(world):
    def positions(query):
        return [f["example"]["position"] for f in _flips(world["api"], world["comparison"], query)]

    assert positions("?stable=false&direction=to_unsafe") == [1]
    assert positions("?stable=true&direction=to_safe") == [4]
    assert positions("?stable=false&direction=to_safe") == [3]


def test_the_selector_takes_stable(world):
    from evaluations.selectors import flips_filtered

    def positions(**kwargs):
        return [f.example.position for f in flips_filtered(comparison_id=world["comparison"].pk, **kwargs)]

    assert positions(stable=True) == [0, 2, 4] and positions(stable=False) == [1, 3]
    assert positions(stable=None) == positions() == [0, 1, 2, 3, 4]
    assert positions(stable=True, direction="to_unsafe") == [0, 2]


@pytest.mark.parametrize("value", ["yes", "1", "True", "", "null", "true ", "tru\u00e9"])
def test_an_invalid_stable_value_is_a_400_naming_the_parameter(world, value):
    response = world["api"].get(f"/api/comparisons/{world['comparison'].pk}/flips/", {"stable": value})
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert list(body["details"]) == ["stable"] and "stable" in body["message"] and "true or false" in body["message"]


def test_stable_given_twice_is_a_400(world):
    response = world["api"].get(f"/api/comparisons/{world['comparison'].pk}/flips/?stable=true&stable=false")
    assert response.status_code == 400 and list(response.json()["details"]) == ["stable"]


def test_the_schema_declares_stable_as_a_boolean_filter():
    from drf_spectacular.generators import SchemaGenerator

    openapi = SchemaGenerator().get_schema(request=None, public=True)
    parameters = {p["name"]: p for p in openapi["paths"]["/api/comparisons/{id}/flips/"]["get"]["parameters"]}
    assert parameters["stable"]["in"] == "query" and not parameters["stable"].get("required", False)
    assert parameters["stable"]["schema"] == {"type": "boolean"}
    assert "400" in parameters["stable"]["description"]
    flip = openapi["components"]["schemas"]["FlipOutput"]["properties"]["stable"]
    assert flip.get("nullable") is True or "null" in str(flip.get("type", ""))
    assert "stability" in openapi["components"]["schemas"]["EvaluationOutput"]["properties"]


def test_an_evaluation_shows_its_stability_pass(world):
    run = world["comparison"].candidate_run
    body = world["api"].get(f"/api/evaluations/{run.pk}/").json()
    assert body["stability"] == run.stability and body["stability"]["unstable"] == 2
    assert world["api"].get(f"/api/evaluations/{world['old'].candidate_run_id}/").json()["stability"] is None


def test_a_comparison_shows_its_results_and_statistics_as_computed(world):
    for comparison in (world["comparison"], world["old"]):
        body = world["api"].get(f"/api/comparisons/{comparison.pk}/").json()
        assert body["results"] == comparison.results and body["statistics"] == comparison.statistics
    assert body["results"]["stability"] is None
