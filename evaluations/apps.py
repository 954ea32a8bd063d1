from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "evaluations"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        from compression.services.data import register_behaviour_data_provider, register_compression_data_provider
        from evaluations.services.behaviour_data import behaviour_data_check, behaviour_data_load
        from evaluations.services.compression_data import suite_compression_data

        register_compression_data_provider(suite_compression_data)
        register_behaviour_data_provider(check=behaviour_data_check, load=behaviour_data_load)
