"""tracking's error codes: one registry (tracking/error_codes.py), no free code strings in the app, every code
listed in the OpenAPI error model."""

from drf_spectacular.generators import SchemaGenerator

from accounts.api.schema import error_code_registries
from tests.governance.test_error_codes import _free_code_strings
from tracking.error_codes import TrackingErrorCode


def test_tracking_raises_no_free_code_strings():
    assert _free_code_strings("tracking") == []


def test_the_registry_is_found_and_documented(db):
    assert error_code_registries()["tracking"] == [TrackingErrorCode]
    schema = SchemaGenerator().get_schema(request=None, public=True)
    description = schema["components"]["schemas"]["Error"]["properties"]["code"]["description"]
    assert f"tracking: {', '.join(TrackingErrorCode)}" in description
