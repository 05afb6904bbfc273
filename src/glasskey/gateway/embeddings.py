"""Embedding encodings: floats, or base64 of little-endian float32 (what the openai SDK asks for).

The SDK requests ``encoding_format: "base64"`` by default and decodes it itself, so the gateway
must produce exactly OpenAI's layout whatever the upstream returned.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from glasskey.errors import ClientError

ENCODINGS = ("float", "base64")


def encode_embeddings(body: dict[str, Any], encoding_format: Any) -> dict[str, Any]:
    if encoding_format in (None, "float"):
        return body
    if encoding_format != "base64":
        raise ClientError("`encoding_format` must be `float` or `base64`", param="encoding_format")
    data = []
    for item in body.get("data", []):
        vector = item["embedding"]
        if isinstance(vector, list):
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({**item, "embedding": vector})
    return {**body, "data": data}
