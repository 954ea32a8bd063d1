"""Template tags for regulators: when their access ends, on every page (templates/base.html).

`{% regulator_access_line %}` is a short line for the header (each active grant and when it ends);
`{% regulator_access_warning %}` a warning banner while a grant ends within
governance.selectors.ACCESS_EXPIRY_WARNING. Both render nothing for other roles."""

from django import template

from governance.selectors import ACCESS_EXPIRY_WARNING, regulator_access

register = template.Library()

SHOWN_IN_LINE = 3  # grants named in the header line; the rest are counted


def _access(context) -> list:
    """The signed-in regulator's grants, read once per render."""
    if "_regulator_access" not in context.render_context:
        user = context.get("user")
        signed_in = user is not None and getattr(user, "is_authenticated", False)
        context.render_context["_regulator_access"] = regulator_access(user) if signed_in else []
    return context.render_context["_regulator_access"]


def _is_regulator(context) -> bool:
    user = context.get("user")
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.role == "regulator")


@register.inclusion_tag("governance/_regulator_access_line.html", takes_context=True)
def regulator_access_line(context) -> dict:
    access = _access(context)
    return {
        "regulator": _is_regulator(context),
        "shown": access[:SHOWN_IN_LINE],
        "more": max(len(access) - SHOWN_IN_LINE, 0),
    }


@register.inclusion_tag("governance/_regulator_access_warning.html", takes_context=True)
def regulator_access_warning(context) -> dict:
    return {
        "ending": [a for a in _access(context) if a.ending_soon],
        "warning_days": ACCESS_EXPIRY_WARNING.days,
    }
