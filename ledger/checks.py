"""System checks for the ledger's settings (run by `manage.py check` and at every start-up)."""

from django.conf import settings
from django.core.checks import Error, register

SEALING_MODES = ("inline", "sealer")


@register()
def sealing_mode(app_configs, **kwargs) -> list[Error]:
    """An unknown SAFESHRINK_LEDGER_SEALING would otherwise leave events unsealed with no sealer."""
    mode = settings.SAFESHRINK.get("LEDGER_SEALING", "inline")
    if mode in SEALING_MODES:
        return []
    return [
        Error(
            f"SAFESHRINK_LEDGER_SEALING is {mode!r}; it must be one of {', '.join(SEALING_MODES)}.",
            hint="inline: each writer seals after its commit; sealer: run `manage.py ledger_sealer`.",
            id="ledger.E001",
        )
    ]
