"""Serializer fields that take only what the schema says: DRF's own coerce (0 -> "0", "3" -> 3, true -> 1),
which the OpenAPI schema (type string, type integer) calls a violation."""

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would take 0 or 1.5 and store "0" or "1.5", which the schema
    (type string) says is wrong."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer, and only an integer (or an integral JSON number such as 3.0): not "3", not true."""

    def to_internal_value(self, data):
        if (
            isinstance(data, bool)
            or not isinstance(data, (int, float))
            or (isinstance(data, float) and not data.is_integer())
        ):
            self.fail("invalid")
        return super().to_internal_value(data)
