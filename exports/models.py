from django.conf import settings
from django.db import models

from compression.models import JobFields


class Export(JobFields):
    """A signed dossier PDF, a signed JSON evidence bundle and the per-example predictions of the release's
    comparison (whose sha256 the bundle carries) for one release, built by a worker."""

    release = models.ForeignKey("governance.Release", on_delete=models.PROTECT, related_name="exports")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    bundle_digest = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the bundle's canonical JSON: same records, same digest."
    )
    checkpoint = models.ForeignKey(
        "ledger.Checkpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    bundle_sha256 = models.CharField(max_length=64, blank=True)
    pdf_bytes = models.PositiveIntegerField(null=True, blank=True)
    predictions_sha256 = models.CharField(
        max_length=64, blank=True, help_text="sha256 of predictions.csv.gz; empty when the release had no comparison."
    )
    predictions_bytes = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"export {self.pk} of release {self.release_id} ({self.status})"
