"""Small generated images for banking tests."""

from __future__ import annotations

import io

from PIL import Image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (32, 24)) -> bytes:
    """A small, valid image in ``fmt``."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 150, 120)).save(out, format=fmt)
    return out.getvalue()
