"""System checks of the compression app (run by `manage.py check`, `migrate`, `runserver`, ...)."""

from django.core.checks import Warning, register


@register()
def optional_methods(app_configs, **kwargs) -> list[Warning]:
    """Probe the optional methods at start-up (never on a request) and say which cannot run here."""
    from compression.capabilities import capabilities_ensure

    answers = capabilities_ensure()
    return [
        Warning(
            f"Compression method {method!r} cannot run in this environment; requests for it are refused "
            "with method_unavailable.",
            hint="Install a torchao that works with this torch.",
            id="compression.W001",
        )
        for method, ok in sorted(answers.items())
        if not ok
    ]
