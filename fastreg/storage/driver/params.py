"""Reading a driver's raw config mapping (``storage.<driver>``), as Distribution reads it.

Object-store sections stay untyped in ``fastreg.config`` (their keys differ per driver and
per Distribution version), and values may arrive as strings from the environment
(``FASTREG_STORAGE_S3_CHUNKSIZE=10485760``), so each driver reads its keys through these.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Params:
    def __init__(self, driver: str, raw: Mapping[str, Any] | None) -> None:
        self.driver = driver
        # Distribution's parameters are case-insensitive in practice (viper lower-cases them).
        self.raw = {str(k).lower(): v for k, v in (raw or {}).items()}

    def _error(self, key: str, detail: str) -> ValueError:
        return ValueError(f"storage.{self.driver}.{key}: {detail}")

    def text(self, key: str, default: str = "") -> str:
        v = self.raw.get(key)
        return default if v is None else str(v)

    def required(self, key: str) -> str:
        v = self.text(key)
        if not v:
            raise self._error(key, "required")
        return v

    def flag(self, key: str, default: bool) -> bool:
        v = self.raw.get(key)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            return v
        text = str(v).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise self._error(key, f"not a boolean: {v!r}")

    def number(self, key: str, default: int, minimum: int = 0) -> int:
        v = self.raw.get(key)
        if v is None or v == "":
            return default
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise self._error(key, f"not an integer: {v!r}") from None
        if n < minimum:
            raise self._error(key, f"must be at least {minimum}")
        return n
