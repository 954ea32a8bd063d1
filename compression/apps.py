from django.apps import AppConfig


class CompressionConfig(AppConfig):
    name = "compression"
    verbose_name = "Compression"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks (the optional methods' probe)
