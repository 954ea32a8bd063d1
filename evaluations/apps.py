from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "evaluations"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        from compression.services.data import register_compression_data_provider
        from evaluations.services.compression_data import suite_compression_data

        register_compression_data_provider(suite_compression_data)
