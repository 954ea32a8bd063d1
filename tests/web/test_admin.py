"""The Django admin: every model of ours listed and opened by an administrator, none added, changed or deleted
by hand (audit records are never rewritten), a release's gate shown as a table."""

import uuid

import pytest
from django.apps import apps
from django.contrib import admin
from django.utils import timezone
from django.utils.html import escape

from accounts.models import User
from tests.factories import evaluated_release

pytestmark = pytest.mark.django_db(transaction=True)

OUR_APPS = ("accounts", "ledger", "compression", "evaluations", "tracking", "governance", "exports")
# Accounts stay editable (password, active, role); everything else is a recorded fact.
EDITABLE = {User}


def _our_models():
    return [m for app in OUR_APPS for m in apps.get_app_config(app).get_models()]


def _url(model, view: str, *args) -> str:
    from django.urls import reverse

    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def administrator(db):
    """The `admin` role as `make run` creates it (load_demo): a superuser, so also staff."""
    from accounts.services import user_create

    return user_create(actor=None, username="ada", role="admin", password="ada-pass-1234", is_superuser=True)


@pytest.fixture
def world(officer, engineer, reviewers, regulator, base_artifact, demo_suite, demo_policy):
    """A release through compression, evaluation, gate, approval and rollout, and at least one row in every
    table of ours (the rows no service makes here are inserted as they are stored)."""
    from compression.models import ArtifactUpload, UploadFile, WorkerHeartbeat
    from evaluations.models import Example, Flip, Prediction, SuiteImport
    from exports.models import Export
    from exports.services.exports import regulator_grant
    from governance import models as g
    from governance.services.escalations import incident_report
    from governance.services.releases import default_rollout_stages, release_decide, release_start_rollout
    from ledger.models import Checkpoint
    from tracking import models as t

    release = evaluated_release(
        engineer=engineer, base_artifact=base_artifact, suite=demo_suite, policy=demo_policy, force_zone="green"
    )
    release_decide(actor=officer, release_id=release.pk, kind="approve", rationale="Inside the policy.")
    release_start_rollout(actor=officer, release_id=release.pk, stages=default_rollout_stages())
    incident_report(actor=officer, release_id=release.pk, severity=2, title="Canary", description="Reports.")
    regulator_grant(actor=officer, regulator_id=regulator.pk, release_id=release.pk, days=3, reason="Audit.")
    release.refresh_from_db()
    now = timezone.now()

    def ensure(model, **fields):
        if not model.objects.exists():
            model.objects.create(**fields)

    example = Example.objects.filter(suite_version=release.suite_version).first()
    ensure(
        Flip,
        comparison=release.comparison,
        example=example,
        baseline_prob=0.2,
        candidate_prob=0.8,
        direction="to_unsafe",
        candidate_correct=True,
    )
    ensure(  # runs from before the Parquet files kept their predictions as rows; new runs write none
        Prediction,
        run=release.baseline_evaluation,
        example=example,
        unsafe_prob=0.2,
        probs=[0.8, 0.1, 0.1],
        predicted_label="normal",
        decision_unsafe=False,
    )
    ensure(
        g.ReviewTask,
        release=release,
        flip=Flip.objects.first(),
        reviewer=reviewers[0],
        a_is_candidate=True,
        deadline=now,
    )
    ensure(g.ApprovalPolicy, risk_tier="medium", approvals_required=1)  # seeded by a migration, flushed here
    ensure(g.MitigationTemplate, code="guard", title="Runtime guard", kind="runtime_guard", description="x")
    ensure(g.RevalidationSchedule, release=release, interval_hours=24, next_run_at=now)
    endpoint = g.WebhookEndpoint.objects.create(url="https://hooks.example/x", secret="s3cret-hmac-key", events=[])
    g.WebhookDelivery.objects.create(endpoint=endpoint, event="release.approved", payload={"release": release.pk})
    ensure(Export, release=release, requested_by=officer)
    ensure(Checkpoint, seq=10**9, head_hash="0" * 64, signed_at=now.isoformat(), key_id="k", signature="sig")
    ensure(
        SuiteImport,
        suite_name="s",
        format="csv",
        unsafe_labels=["x"],
        file_name="s.csv",
        file_size=1,
        file_sha256="0" * 64,
        requested_by=engineer,
    )
    WorkerHeartbeat.objects.create(hostname="w@h", queues=["cpu", "io"], device="cpu", started_at=now, last_seen=now)
    upload = ArtifactUpload.objects.create(key=uuid.uuid4(), owner=engineer, name="m", total_bytes=1, active_at=now)
    UploadFile.objects.create(upload=upload, path="config.json", size=1)
    run = t.ExternalRun.objects.create(
        experiment=release.experiment, recorded_by=engineer, method="gptq", started_at=now
    )
    t.ExternalRunParam.objects.create(run=run, key="bits", value="4")
    t.ExternalRunTag.objects.create(run=run, key="team", value="safety")
    t.ExternalRunMetric.objects.create(run=run, key="loss", value=0.5, step=1, timestamp=1)
    t.EngineerKey.objects.create(owner=engineer, key_id="ab" * 32, public_key="-----BEGIN PUBLIC KEY-----")
    t.ExternalRunProvenance.objects.create(
        run=run,
        attached_by=engineer,
        envelope={},
        envelope_digest="0" * 64,
        payload_type="application/vnd.in-toto+json",
        statement={},
        signature_verified=False,
    )
    t.RunArtifactFile.objects.create(run=run, path="model/config.json", sha256="0" * 64, size=1)
    registered = t.RegisteredModel.objects.create(owner=engineer, name="m")
    t.RegisteredModelVersion.objects.create(
        registered_model=registered,
        version=1,
        run=run,
        artifact_path="model",
        artifact=release.candidate,
        source="runs:/x/model",
        created_by=engineer,
    )
    return release


def test_every_model_of_ours_is_in_the_admin():
    missing = [m._meta.label for m in _our_models() if m not in admin.site._registry]
    assert missing == []


def test_administrator_lists_searches_and_opens_every_model(client, administrator, world):
    client.force_login(administrator)
    for model in _our_models():
        label = model._meta.label
        obj = model.objects.order_by("pk").first()
        assert obj is not None, f"{label}: the fixture left its table empty"
        assert client.get(_url(model, "changelist")).status_code == 200, label
        assert client.get(_url(model, "changelist"), {"q": "zz 7"}).status_code == 200, label
        page = client.get(_url(model, "change", obj.pk))
        assert page.status_code == 200, label
        if model not in EDITABLE:
            assert 'name="_save"' not in page.content.decode(), f"{label}: offers a save button"


def test_nobody_adds_changes_or_deletes_recorded_facts_by_hand(client, administrator, world):
    from ledger.models import LedgerEvent

    client.force_login(administrator)
    events = LedgerEvent.objects.count()
    for model in _our_models():
        label = model._meta.label
        obj = model.objects.order_by("pk").first()
        if model not in EDITABLE:
            assert client.get(_url(model, "add")).status_code == 403, label
            assert client.post(_url(model, "add"), {}).status_code == 403, label
            assert client.post(_url(model, "change", obj.pk), {}).status_code == 403, label
        assert client.get(_url(model, "delete", obj.pk)).status_code == 403, label
        assert client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403, label
        assert model.objects.filter(pk=obj.pk).exists(), label
    assert LedgerEvent.objects.count() == events


def test_release_page_shows_the_gate_as_a_table(client, administrator, world):
    client.force_login(administrator)
    page = client.get(_url(type(world), "change", world.pk)).content.decode()
    table = page.split('<table class="gate-table">')[1].split("</table>")[0]
    for header in ("Rule", "Metric", "Value", "Thresholds", "Zone"):
        assert f"<th>{header}</th>" in table
    assert world.gate, "the evaluated release has a gate"
    rows = table.split("<tbody>")[1].split("<tr>")[1:]
    assert len(rows) == len(world.gate)
    for row, verdict in zip(rows, world.gate, strict=True):
        assert f"<code>{verdict['rule']}</code>" in row and escape(verdict["title"]) in row
        assert verdict["zone"].upper() in row
    assert "green_limit" not in page  # not the raw JSON blob (the admin would show it HTML-escaped)
    assert '<div style="overflow-x:auto;max-width:100%"><table class="gate-table">' in page  # scrolls, not cut
    assert f'<a href="/releases/{world.pk}/">' in page  # the way to the release's page on the site


def test_json_fields_are_pretty_printed_in_a_scrolling_block_with_a_link_to_the_page(client, administrator, world):
    from compression.models import CompressionRun
    from evaluations.models import Comparison, EvaluationRun

    client.force_login(administrator)
    for model, field, url in (
        (CompressionRun, "provenance", "/runs/{}/"),
        (EvaluationRun, "config", "/evaluations/{}/"),
        (Comparison, "results", "/comparisons/{}/"),
    ):
        obj = model.objects.exclude(**{f"{field}__isnull": True}).order_by("pk").first()
        assert obj is not None and getattr(obj, field), f"{model.__name__}.{field}: the fixture left it empty"
        page = client.get(_url(model, "change", obj.pk)).content.decode()
        block = page.split('<pre class="json" style="max-height:24em;')[1:]
        assert block, f"{model.__name__}: no JSON block"
        first_key = sorted(getattr(obj, field))[0]
        assert any(f"\n  &quot;{escape(first_key)}&quot;: " in b.split("</pre>")[0] for b in block), model.__name__
        assert f'<a href="{url.format(obj.pk)}">' in page, model.__name__


def test_review_outcome_is_a_small_table(client, administrator, world):
    from governance.admin import review_outcome_table

    outcome = {
        "items": 4,
        "reviews": 8,
        "labels": {"safety_deviation": 3, "acceptable": 5},
        "deviation_share": 0.25,
        "kappa": 0.5,
        "verdict": "fail",
        "new_key": "<i>x</i>",
    }
    html = review_outcome_table(outcome)
    assert "<tr><th>Verdict</th><td>FAIL</td></tr>" in html and "<tr><th>Deviation share</th><td>0.25</td>" in html
    assert "Acceptable: 5; Safety deviation: 3" in html and "&lt;i&gt;x&lt;/i&gt;" in html and "<i>" not in html
    assert "No blind review outcome" in review_outcome_table(None)
    type(world).objects.filter(pk=world.pk).update(review_outcome=outcome)
    client.force_login(administrator)
    page = client.get(_url(type(world), "change", world.pk)).content.decode()
    assert '<table class="review-outcome">' in page and "deviation_share" not in page


def test_a_webhook_secret_is_not_shown(client, administrator, world):
    from governance.models import WebhookEndpoint

    client.force_login(administrator)
    endpoint = WebhookEndpoint.objects.get()
    page = client.get(_url(WebhookEndpoint, "change", endpoint.pk)).content.decode()
    assert "hooks.example" in page and endpoint.secret not in page


def test_only_superusers_reach_the_admin(client, make_user, officer):
    """Admin access is Django's: is_staff, which user_create gives only with is_superuser (the `admin` role of
    `make run`). An officer, or an `admin`-role account made without it, is sent to the admin's login."""
    for user in (officer, make_user("adam", "admin")):
        client.force_login(user)
        response = client.get("/admin/governance/release/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_gate_table_escapes_and_tolerates_old_verdicts():
    from governance.admin import gate_table

    html = gate_table(
        [
            {
                "rule": "r1",
                "title": "<b>x</b>",
                "metric": "recall",
                "group": "overall",
                "value": 0.123456,
                "green_limit": -0.02,
                "red_limit": -0.05,
                "higher_is_better": True,
                "zone": "amber",
                "reason": "",
            },
            {"rule": "r2", "zone": "green"},
        ]
    )
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "0.1235" in html and "green ≥ -0.02, red &lt; -0.05" in html
    assert html.count("<tr>") == 3 and "AMBER" in html and "GREEN" in html
    assert "No gate yet" in gate_table(None)


def test_admin_index_names_approval_policies_in_plural(client, administrator):
    from governance.models import ApprovalPolicy

    assert ApprovalPolicy._meta.verbose_name_plural == "approval policies"
    client.force_login(administrator)
    page = client.get("/admin/").content.decode()
    assert "Approval policies" in page and "Approval policys" not in page
