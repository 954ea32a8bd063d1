from django.db import transaction

from accounts.errors import ValidationFailed
from accounts.models import Role, User
from ledger.services import ledger_append


def user_create(*, actor, username: str, role: str, password: str, email: str = "", is_superuser: bool = False) -> User:
    if role not in Role.values:
        raise ValidationFailed("Unknown role.", details={"role": [f"One of {Role.values}."]})
    if User.objects.filter(username=username).exists():
        raise ValidationFailed("That username is taken.", details={"username": ["Already exists."]})
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, email=email, role=role,
                                        is_staff=is_superuser, is_superuser=is_superuser)
        ledger_append(actor=actor, action="user.created", object_type="user", object_id=user.pk,
                      payload={"username": username, "role": role})
    return user
