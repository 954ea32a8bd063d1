from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    ENGINEER = "engineer", "Engineer"
    OFFICER = "officer", "Governance officer"
    REVIEWER = "reviewer", "Expert reviewer"
    REGULATOR = "regulator", "Regulator"
    ADMIN = "admin", "Administrator"


class User(AbstractUser):
    """A person using SafeShrink. The role decides what they may do (see ARCHITECTURE.md)."""

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ENGINEER)

    class Meta:
        db_table = "accounts_user"

    def __str__(self) -> str:
        return f"{self.username} ({self.role})"

    @property
    def is_officer(self) -> bool:
        return self.role == Role.OFFICER

    @property
    def is_engineer(self) -> bool:
        return self.role == Role.ENGINEER
