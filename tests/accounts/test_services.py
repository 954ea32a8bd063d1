"""accounts: creating users (services), the role check (api.permissions) and the error model's classes (errors)."""

import json

import pytest
from django.contrib.auth import authenticate
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from accounts.api.permissions import HasRole
from accounts.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from accounts.models import Role, User
from accounts.services import user_create
from ledger.models import LedgerEvent

pytestmark = pytest.mark.django_db


def _events(action: str) -> list[LedgerEvent]:
    return list(LedgerEvent.objects.filter(action=action).order_by("id"))


# --- user_create ------------------------------------------------------------------------------------------------


def test_user_create_stores_the_role_and_a_usable_password_and_records_who_created_whom(make_user):
    admin = make_user("ada", "admin")
    user = user_create(actor=admin, username="rita", role="regulator", password="rita-pass-123", email="r@x.org")
    assert (user.role, user.email, user.is_staff, user.is_superuser) == (Role.REGULATOR, "r@x.org", False, False)
    assert authenticate(username="rita", password="rita-pass-123") == user
    assert authenticate(username="rita", password="wrong") is None
    event = _events("user.created")[-1]
    assert (event.actor_username, event.object_type, event.object_id) == ("ada", "user", str(user.pk))
    assert json.loads(event.payload_json) == {"username": "rita", "role": "regulator"}
    assert "rita-pass-123" not in event.payload_json


def test_user_create_superuser_is_staff_too():
    user = user_create(actor=None, username="root", role="admin", password="root-pass-123", is_superuser=True)
    assert (user.is_staff, user.is_superuser) == (True, True)


def test_user_create_refuses_an_unknown_role_naming_the_field_and_stores_nothing():
    with pytest.raises(ValidationFailed) as refused:
        user_create(actor=None, username="mallory", role="superhero", password="m-pass-123")
    assert refused.value.status == 400 and refused.value.code == "invalid"
    assert list(refused.value.details) == ["role"]
    assert not User.objects.filter(username="mallory").exists()
    assert _events("user.created") == []


def test_user_create_refuses_a_taken_username_naming_the_field(make_user):
    make_user("eve", "engineer")
    with pytest.raises(ValidationFailed) as refused:
        user_create(actor=None, username="eve", role="officer", password="e-pass-123")
    assert list(refused.value.details) == ["username"]
    assert User.objects.get(username="eve").role == Role.ENGINEER
    assert len(_events("user.created")) == 1


def test_user_str_and_role_properties(make_user):
    officer, engineer = make_user("olga", "officer"), make_user("eve", "engineer")
    assert str(officer) == "olga (officer)"
    assert (officer.is_officer, officer.is_engineer) == (True, False)
    assert (engineer.is_officer, engineer.is_engineer) == (False, True)


# --- HasRole ----------------------------------------------------------------------------------------------------


class _View:
    def __init__(self, allowed=None, write=None):
        if allowed is not None:
            self.allowed_roles = allowed
        if write is not None:
            self.write_roles = write


def _request(method: str, user) -> Request:
    request = Request(getattr(APIRequestFactory(), method)("/api/things/"))
    request.user = user
    return request


@pytest.mark.parametrize(
    ("role", "method", "view", "allowed", "reason"),
    [
        ("engineer", "get", _View(allowed=(Role.ENGINEER,)), True, None),
        ("officer", "get", _View(allowed=(Role.ENGINEER,)), False, "role_not_allowed"),
        ("admin", "post", _View(allowed=(Role.ENGINEER,), write=(Role.ENGINEER,)), True, None),  # admins always
        ("officer", "get", _View(allowed=(Role.OFFICER,), write=(Role.ENGINEER,)), True, None),  # may read
        ("officer", "post", _View(allowed=(Role.OFFICER,), write=(Role.ENGINEER,)), False, "role_may_not_write"),
        ("engineer", "delete", _View(allowed=(Role.OFFICER,), write=(Role.ENGINEER,)), True, None),
        ("regulator", "post", _View(), True, None),  # a view without roles leaves the decision to the service
    ],
)
def test_has_role_decides_by_role_and_method_and_records_each_refusal(make_user, role, method, view, allowed, reason):
    user = make_user(f"u-{role}", role)
    assert HasRole().has_permission(_request(method, user), view) is allowed
    denied = _events("access.denied")
    if allowed:
        assert denied == []
    else:
        assert len(denied) == 1
        payload = json.loads(denied[0].payload_json)
        assert (payload["role"], payload["method"], payload["reason"]) == (role, method.upper(), reason)


def test_has_role_refuses_anonymous_requests_and_counts_them_without_a_ledger_event(monkeypatch):
    from django.contrib.auth.models import AnonymousUser

    import accounts.services as account_services

    monkeypatch.setattr(account_services, "_anon_pending", set())  # no windows left over from other tests
    monkeypatch.setattr(account_services, "_now", lambda: 60.0 * 31_666_666)
    cache.clear()
    assert HasRole().has_permission(_request("get", AnonymousUser()), _View()) is False
    assert account_services._anon_pending == {31_666_666 * 60 // account_services._window_seconds()}  # counted
    assert LedgerEvent.objects.filter(action__startswith="access.denied").count() == 0  # not recorded one by one
    cache.clear()


# --- the error model's classes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (ValidationFailed, 400, "invalid"),
        (PermissionDenied, 403, "permission_denied"),
        (NotFound, 404, "not_found"),
        (Conflict, 409, "conflict"),
    ],
)
def test_domain_errors_carry_status_code_message_and_details(cls, status, code):
    error = cls("No.", details={"field": ["Why."]})
    assert isinstance(error, DomainError)
    assert (error.status, error.code, error.message, str(error), error.details) == (
        status,
        code,
        "No.",
        "No.",
        {"field": ["Why."]},
    )
    assert cls("No.").details == {}
    assert cls("No.", code="outside_authority").code == "outside_authority"  # a specific code overrides the default
