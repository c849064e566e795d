"""Regenerates the shipped example batch: a small product catalog, recordings, and prompts.

    python examples/make_examples.py

Writes examples/catalog/*.jpg, examples/audio/*.wav and examples/batch.jsonl (OpenAI Batch input format).
The recordings are spoken by mmq's provider simulator, so transcribing them returns their text.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from mmq.simulator import encode_speech_wav

HERE = Path(__file__).resolve().parent
PRODUCTS = [
    ("mug", (200, 30, 30)),
    ("mug", (30, 60, 200)),
    ("mug", (30, 160, 60)),
    ("mug", (240, 200, 20)),
    ("tshirt", (240, 130, 20)),
    ("tshirt", (130, 40, 160)),
    ("tshirt", (240, 120, 170)),
    ("tshirt", (20, 20, 20)),
    ("lamp", (40, 200, 210)),
    ("lamp", (120, 70, 30)),
    ("lamp", (200, 30, 30)),
    ("lamp", (30, 60, 200)),
    ("vase", (30, 160, 60)),
    ("vase", (240, 200, 20)),
    ("vase", (240, 130, 20)),
    ("vase", (130, 40, 160)),
    ("chair", (240, 120, 170)),
    ("chair", (40, 200, 210)),
    ("chair", (120, 70, 30)),
    ("chair", (20, 20, 20)),
    ("bag", (200, 30, 30)),
    ("bag", (30, 60, 200)),
    ("bag", (30, 160, 60)),
    ("bag", (240, 200, 20)),
]
RECORDINGS = {
    "order-123": "Order one two three: twelve blue mugs, shipped on Monday.",
    "returns": "Customer would like to return the red lamp; it arrived broken.",
    "inventory": "Inventory check: forty chairs in aisle seven, six vases on the top shelf.",
}


def product_photo(kind: str, colour: tuple[int, int, int]) -> bytes:
    """A simple drawing: the product in its colour fills most of a light background."""
    img = Image.new("RGB", (320, 320), (235, 235, 235))
    d = ImageDraw.Draw(img)
    shapes = {
        "mug": lambda: (
            d.rectangle((50, 40, 230, 290), fill=colour),
            d.ellipse((200, 110, 300, 220), fill=colour),
        ),
        "tshirt": lambda: d.polygon(
            [
                (20, 80),
                (110, 20),
                (210, 20),
                (300, 80),
                (260, 140),
                (240, 120),
                (240, 310),
                (80, 310),
                (80, 120),
                (60, 140),
            ],
            fill=colour,
        ),
        "lamp": lambda: (
            d.polygon([(60, 180), (260, 180), (210, 20), (110, 20)], fill=colour),
            d.rectangle((140, 180, 180, 300), fill=colour),
            d.rectangle((70, 290, 250, 315), fill=colour),
        ),
        "vase": lambda: d.ellipse((50, 20, 270, 310), fill=colour),
        "chair": lambda: (
            d.rectangle((40, 10, 280, 170), fill=colour),
            d.rectangle((40, 160, 280, 210), fill=colour),
            d.rectangle((40, 200, 80, 315), fill=colour),
            d.rectangle((240, 200, 280, 315), fill=colour),
        ),
        "bag": lambda: (
            d.rectangle((30, 90, 290, 310), fill=colour),
            d.arc((90, 10, 230, 170), 180, 360, fill=colour, width=18),
        ),
    }
    shapes[kind]()
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def main() -> None:
    (HERE / "catalog").mkdir(exist_ok=True)
    (HERE / "audio").mkdir(exist_ok=True)
    lines = []
    for n, (kind, colour) in enumerate(PRODUCTS, start=1):
        sku = f"sku-{n:03d}-{kind}"
        data = product_photo(kind, colour)
        (HERE / "catalog" / f"{sku}.jpg").write_bytes(data)
        url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
        lines.append(
            {
                "custom_id": sku,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "max_tokens": 120,
                    "messages": [
                        {"role": "system", "content": "You write short, factual product captions."},
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "text",
                                    "text": f"Write a one-line caption for this {kind}, naming its colour.",
                                },
                                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                            ],
                        },
                    ],
                },
            }
        )
    for n, prompt in enumerate(
        [
            "a ceramic teapot on a wooden table, studio light",
            "a minimalist poster of a mountain at dawn",
            "an isometric icon of a delivery van",
        ],
        start=1,
    ):
        lines.append(
            {
                "custom_id": f"image-{n}",
                "method": "POST",
                "url": "/v1/images/generations",
                "body": {"model": "gpt-image-1", "prompt": prompt, "size": "512x512"},
            }
        )
    for n, text in enumerate(
        [
            "Welcome to the spring catalog.",
            "Free shipping on orders over fifty euros.",
            "Thank you for shopping with us.",
        ],
        start=1,
    ):
        lines.append(
            {
                "custom_id": f"speech-{n}",
                "method": "POST",
                "url": "/v1/audio/speech",
                "body": {"model": "tts-1", "input": text, "voice": "alloy", "response_format": "wav"},
            }
        )
    for name, text in RECORDINGS.items():
        (HERE / "audio" / f"{name}.wav").write_bytes(encode_speech_wav(text))
        lines.append(
            {
                "custom_id": f"transcript-{name}",
                "method": "POST",
                "url": "/v1/audio/transcriptions",
                "body": {"model": "whisper-1", "file": f"audio/{name}.wav", "response_format": "json"},
            }
        )
    lines.append(
        {
            "custom_id": "translation-returns",
            "method": "POST",
            "url": "/v1/audio/translations",
            "body": {"model": "whisper-1", "file": "audio/returns.wav"},
        }
    )
    with (HERE / "batch.jsonl").open("w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    print(f"wrote {len(lines)} lines to {HERE / 'batch.jsonl'}")


if __name__ == "__main__":
    main()
