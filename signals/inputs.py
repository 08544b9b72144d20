"""The inputs every signal reads, declared and decoded in one place.

Image signals read the `image` column, or where it is null fetch the `image_uri` column's URI
(`signals.fetch`, within the allowlist of `SignalConfig.fetch`, from the configuration's
`fetch:` section), then decode through `decode_image` with the configured limits
(`SignalConfig.decode`, from the configuration's `decode:` section), and
text signals read title + description through `compose_text`, so an input that is an error
row for one signal is an error row for all of them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd
from PIL import Image

from signals.base import InputKind, SignalConfig
from signals.decode import InputError, decode_image
from signals.fetch import fetch
from signals.profiling import stage_times
from signals.text import compose_text, field_text


class ImageInput:
    """Mixin for labelers of the pin image."""

    input_kind: ClassVar[InputKind] = "image"
    input_columns: ClassVar[tuple[str, ...]] = ("image", "image_uri")
    config: SignalConfig

    @property
    def resize_short_side(self) -> int | None:
        """The side the signal's preprocessing resizes the short side to (None: no such resize),
        so that the decode limits bound the resized image too."""
        return None

    @property
    def fetches(self) -> bool:
        """Whether rows may be fetched by URI (the configured allowlist names somewhere)."""
        return self.config.fetch.enabled

    def image_bytes(self, row: Mapping[str, Any]) -> Any:
        """The row's encoded image: its `image` bytes, else those fetched from its `image_uri`
        (signals.fetch.FetchError, an InputError, saying why not); None when it has neither. The
        URI comes as bytes (udfs.columns.input_columns): one that is not UTF-8 is an InputError."""
        image, uri = row.get("image"), row.get("image_uri")
        if image is not None or uri is None:
            return image
        with stage_times.time("fetch", 1):
            return fetch(field_text(uri, "image_uri"), self.config.fetch)

    def decode_bytes(self, data: Any) -> Image.Image:
        """Encoded bytes as an RGB image within the configured limits, or InputError."""
        return decode_image(data, self.config.decode, self.resize_short_side)

    def decode(self, row: Mapping[str, Any]) -> Image.Image:
        """The row's image as RGB, or InputError (null, not fetched, corrupt, too large, ...)."""
        return self.decode_bytes(self.image_bytes(row))


class TextInput:
    """Mixin for labelers of the pin text (title + description)."""

    input_kind: ClassVar[InputKind] = "text"
    input_columns: ClassVar[tuple[str, ...]] = ("title", "description")
    # how much of a text the model reads changes the scores of longer texts: a version names it (docs/design.md)
    identity_params: ClassVar[tuple[str, ...]] = ("max_chars",)
    identity_defaults: ClassVar[Mapping[str, Any]] = {"max_chars": 4096}
    config: SignalConfig

    @property
    def max_chars(self) -> int:
        return int(self.config.params.get("max_chars", TextInput.identity_defaults["max_chars"]))

    def text(self, row: Mapping[str, Any]) -> str:
        """Title and description as one text, or InputError when both are blank."""
        return compose_text(row["title"], row["description"], self.max_chars)

    def sort_keys(self, frame: pd.DataFrame) -> list[int]:
        """Characters of title and description: a cheap stand-in for the token count."""
        return [sum(len(v) for v in (t, d) if isinstance(v, str | bytes)) for t, d in zip(frame["title"].tolist(), frame["description"].tolist())]

    def fields(self, row: Mapping[str, Any]) -> list[str]:
        """Title and description separately, each normalised like `text`; blank ones left out."""
        fields = []
        for column in self.input_columns:
            with contextlib.suppress(InputError):
                fields.append(compose_text(row[column], None, self.max_chars))
        return fields


INPUT_COLUMNS: dict[InputKind, tuple[str, ...]] = {"image": ImageInput.input_columns, "text": TextInput.input_columns}  # what each kind of input reads
