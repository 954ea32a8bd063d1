from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Tracking (external runs)"

    def ready(self) -> None:
        # Uploaded model folders carrying an OpenSSF model-signing signature (model.sig) are verified against
        # the elliptic-curve keys their uploader registered (compression cannot import tracking: the layers).
        from compression.services.signatures import register_public_key_source

        from .models import EngineerKey

        def engineer_keys(user) -> list[tuple[str, str]]:
            return [(k.key_id, k.public_key) for k in EngineerKey.objects.filter(owner_id=user.pk).order_by("id")]

        register_public_key_source("tracking.engineer_keys", engineer_keys)
