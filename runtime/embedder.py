"""The one funnel from images to unit embeddings: decode, preprocess (the bundle's spec), run the extractor,
normalize once. The Recognizer owns one; nothing else turns an image into an embedding."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .bundle import Bundle
from .images import ImageInput, load_image, load_image_digest
from .preprocess import preprocess
from .recognizer_options import RecognizerOptions
from .unit import extractor_units


@dataclass
class Embedded:
    """Unit embeddings float32 (m, D) of the items that could be read (their indices in `ok`, their content
    digests in `digests`), the others as (index, why) in `failed`, and the indices skipped as repeats."""

    embeddings: np.ndarray
    ok: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    repeats: list[int] = field(default_factory=list)


class Embedder:
    """Images (paths, bytes, uint8 (H, W, 3) arrays in a colour order) -> unit embeddings float32 (n, D)."""

    def __init__(self, bundle: Bundle, options: RecognizerOptions) -> None:
        self._spec = bundle.manifest.preprocess
        self.dim = bundle.manifest.embedding_dim
        self.options = options
        self._extractor = bundle.open_extractor(options.format, options.precision, options.extractor)
        # The file that passed its self-check on this device (the manifest's first choice may not have).
        self.entry = getattr(self._extractor, "entry", None) or bundle.manifest.select(options.format, options.precision)

    def embed(self, images: Sequence[ImageInput], color_order: str = "RGB") -> np.ndarray:
        """Unit embeddings float32 (n, D), in batches of options.batch_size; ValueError for an unreadable image."""
        if not images:
            raise ValueError("no images given")
        out, bs = [], self.options.batch_size
        for i in range(0, len(images), bs):
            chunk = images[i : i + bs]
            if all(isinstance(x, np.ndarray) for x in chunk):
                x = preprocess(list(chunk), self._spec, self._extractor.layout, color_order)  # BGR swapped for free
            else:
                x = preprocess([load_image(x, color_order, self._spec.resize_size) for x in chunk], self._spec,
                               self._extractor.layout)
            out.append(self._extractor.run(x))
        return extractor_units(np.concatenate(out))

    def embed_shots(self, images: Sequence[np.ndarray], color_order: str = "RGB") -> np.ndarray:
        """Unit embeddings float32 (n, D) of uint8 images (H, W, 3) being taught: `embed`, or with
        options.mirror_shots the normalized mean of each image's and its mirror's embeddings."""
        e = self.embed(images, color_order)
        if not self.options.mirror_shots:
            return e
        return extractor_units(e + self.embed([im[:, ::-1] for im in images], color_order))

    def embed_each(self, items: Sequence[ImageInput], color_order: str = "RGB", shots: bool = False,
                   skip: set[str] | None = None, on_item: Callable[[], None] | None = None) -> Embedded:
        """Embed items one batch at a time, reporting (never raising for) the ones that cannot be decoded.
        shots: they are being taught (embed_shots). skip: digests to leave out as repeats (the class's shot
        ids); items repeating each other are left out too. on_item: called after each item (progress)."""
        chunks, out = [], Embedded(np.zeros((0, self.dim), np.float32))
        seen = set(skip) if skip is not None else None
        for batch in self._batches(items, color_order, out, seen, on_item):
            chunks.append(self.embed_shots(batch) if shots else self.embed(batch))  # decoded: RGB
        if chunks:
            out.embeddings = np.concatenate(chunks)
        return out

    def _batches(self, items: Sequence[ImageInput], color_order: str, out: Embedded, seen: set[str] | None,
                 on_item: Callable[[], None] | None) -> Iterator[list[np.ndarray]]:
        pending: list[np.ndarray] = []
        for i, item in enumerate(items):
            try:
                image, digest = load_image_digest(item, color_order, self._spec.resize_size)
            except ValueError as err:
                out.failed.append((i, str(err)))
                image = None
            if image is not None and seen is not None and (digest in seen or seen.add(digest)):
                out.repeats.append(i)
            elif image is not None:
                pending.append(image)
                out.ok.append(i)
                out.digests.append(digest)
            if on_item is not None:
                on_item()
            if len(pending) == self.options.batch_size:
                yield pending
                pending = []
        if pending:
            yield pending

    def frame(self, frame: np.ndarray, color_order: str = "BGR") -> tuple[np.ndarray, float, float]:
        """One camera frame uint8 (H, W, 3) in its colour order -> (unit embedding float32 (D,), preprocess
        seconds, extractor seconds)."""
        t0 = time.perf_counter()
        x = preprocess(frame, self._spec, self._extractor.layout, color_order)
        t1 = time.perf_counter()
        e = extractor_units(self._extractor.run(x))[0]
        return e, t1 - t0, time.perf_counter() - t1

    def close(self) -> None:
        self._extractor.close()


def item_name(item: ImageInput, index: int) -> str:
    """How a report names an input: its path, or its position."""
    return str(item) if isinstance(item, (str, os.PathLike)) else f"image {index + 1}"
