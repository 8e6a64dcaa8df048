"""Pictures of explanations, with Pillow and numpy only (serving installs no matplotlib).

picture = overlay(photo, heatmap, "tabby", 0.91)     # heatmap over the photo, colour bar,
picture.save("overlays/cat.png")                     # label and score
click.echo(coloured_words(text, explanation))        # text: words shaded by attribution
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onyx.proto.v1 import classifier_pb2 as api

BAR_WIDTH = 18
MARGIN = 8
ALPHA = 0.5


def colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 on the "jet" scale (blue: nothing, red: what decided it)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    offsets = np.asarray([3.0, 2.0, 1.0])  # r, g, b
    rgb = np.clip(1.5 - np.abs(4.0 * v - offsets), 0.0, 1.0)
    colours: np.ndarray = (rgb * 255).astype(np.uint8)
    return colours


def heatmap_on_image(size: tuple[int, int], heatmap: api.Heatmap) -> np.ndarray:
    """The heatmap placed on an image of `size` (width, height): (height, width) in [0, 1],
    NaN where the model saw nothing (cropped away)."""
    grid = np.asarray(heatmap.values, dtype=np.float32).reshape(heatmap.rows, heatmap.cols)
    sx, sy = size[0] / max(heatmap.image_width, 1), size[1] / max(heatmap.image_height, 1)
    left, top = round(heatmap.x * sx), round(heatmap.y * sy)
    width = max(1, round(heatmap.width * sx))
    height = max(1, round(heatmap.height * sy))
    resized = np.asarray(
        Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    )
    full = np.full((size[1], size[0]), np.nan, dtype=np.float32)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + width, size[0]), min(top + height, size[1])
    full[y0:y1, x0:x1] = resized[y0 - top : y1 - top, x0 - left : x1 - left]
    return full


def overlay(image: Image.Image, heatmap: api.Heatmap, label: str, score: float) -> Image.Image:
    """The photo with the heatmap blended over it, a colour bar and a caption."""
    photo = image.convert("RGB")
    values = heatmap_on_image(photo.size, heatmap)
    pixels = np.asarray(photo, dtype=np.float32)
    seen = ~np.isnan(values)[..., None]
    coloured = (1 - ALPHA) * pixels + ALPHA * colormap(np.nan_to_num(values))
    # Cropped away: the photo, dimmed, without colour (the model never saw it).
    blended = np.where(seen, coloured, 0.45 * pixels)
    body = Image.fromarray(blended.astype(np.uint8))
    font = ImageFont.load_default()
    caption = f"{label}  {score:.3f}"
    line = 14
    canvas = Image.new(
        "RGB", (body.width + 3 * MARGIN + BAR_WIDTH + 24, body.height + line + 2 * MARGIN), "white"
    )
    canvas.paste(body, (MARGIN, line + MARGIN))
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN // 2), caption, fill="black", font=font)
    _colour_bar(canvas, draw, (body.width + 2 * MARGIN, line + MARGIN), body.height, font)
    return canvas


def _colour_bar(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    height: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(BAR_WIDTH, axis=1)
    canvas.paste(Image.fromarray(colormap(ramp)), origin)
    x = origin[0] + BAR_WIDTH + 3
    draw.text((x, origin[1]), "1", fill="black", font=font)
    draw.text((x, origin[1] + height - 12), "0", fill="black", font=font)


def word_colour(score: float, scale: float) -> tuple[int, int, int]:
    """Red for words that support the class, blue for words against it, white for neither."""
    strength = min(1.0, abs(score) / scale) if scale > 0 else 0.0
    fade = round(255 * (1 - 0.75 * strength))
    return (255, fade, fade) if score > 0 else (fade, fade, 255)


def coloured_words(text: str, explanation: api.ClassExplanation) -> str:
    """The text with each token's characters on a background by its score (ANSI 24-bit)."""
    import click

    scale = max((abs(t.score) for t in explanation.tokens), default=0.0)
    pieces, cursor = [], 0
    for token in sorted(explanation.tokens, key=lambda t: t.start):
        if token.end <= token.start or token.start < cursor:
            continue
        pieces.append(text[cursor : token.start])
        word = text[token.start : token.end]
        pieces.append(click.style(word, fg="black", bg=word_colour(token.score, scale)))
        cursor = token.end
    pieces.append(text[cursor:])
    return "".join(pieces)
