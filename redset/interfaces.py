"""The serializer interface that redset sets accept (kept from redset 0.5.1)."""
from __future__ import annotations

import abc
from typing import Any

__all__ = ["Serializer"]


class Serializer(abc.ABC):
    """Turn Python objects into set members and back.

    Serializers need not subclass this: any object with ``loads`` and ``dumps``
    works. ``dumps`` returns ``bytes`` or ``str`` (``str`` is stored as UTF-8);
    ``loads`` receives the member decoded to ``str`` (UTF-8), as in 0.5.1,
    whatever the client's ``decode_responses``. A serializer for binary
    members sets the class attribute ``loads_bytes = True`` to receive
    ``bytes`` instead.
    """

    @abc.abstractmethod
    def loads(self, str_from_redis: Any) -> Any:
        """Deserialize a member read from Redis into a Python object.

        :param str_from_redis: the stored member.
        :returns: the Python object.
        """

    @abc.abstractmethod
    def dumps(self, obj: Any) -> Any:
        """Serialize a Python object into a member.

        :param obj: the object to store.
        :returns: ``bytes`` or ``str``.
        """
