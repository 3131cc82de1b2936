"""Client cards drawn at true size: for tests, benchmarks and ``kiosk testcard``.

A card is ISO/IEC 7810 ID-1 (85.60 x 53.98 mm, corner radius 3.18 mm): the utility's name on a
coloured band, the client's name, contract number and supply address, and on a white panel a
Code 128 barcode of the spec v1 payload with the payload printed under it.

The barcode's narrow bar (module) is a whole number of pixels at the rendering resolution
(5 px = 0.42 mm at 300 dpi), so a printed card has clean edges, and the quiet zones are the
10 modules ISO/IEC 15417 asks for. At a counter camera's distance a 0.42 mm module is about
2 px in a 720p frame: as large as the card's width allows.

>>> card = render_card("0012345678", 1, name="Jana Ozola")
>>> card.size
(1011, 638)
>>> save_card("card.pdf", "0012345678", 1)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import barcode
from barcode.writer import ImageWriter
from PIL import Image, ImageDraw, ImageFont

from device.card import CARD_MODULE_MM, CARD_V1, CardFormat

#: ISO/IEC 7810 ID-1 card size and corner radius, in millimetres.
CARD_WIDTH_MM = 85.60
CARD_HEIGHT_MM = 53.98
CARD_CORNER_MM = 3.18

#: Narrow bar width we aim for, in millimetres (rounded to whole pixels at the chosen dpi).
MODULE_MM = CARD_MODULE_MM
#: Quiet zone on each side of the barcode, in modules (ISO/IEC 15417 minimum).
QUIET_ZONE_MODULES = 10
BAR_HEIGHT_MM = 11.0

DEFAULT_UTILITY = "Baltic Energy"
DEFAULT_NAME = "Jana Ozola"
DEFAULT_ADDRESS = "Brivibas iela 12-5, Riga, LV-1010"

# The band colour and the panel: a dark band like most utility cards, a white barcode panel so the
# quiet zones are light whatever the card's design.
_BAND_RGB = (0, 84, 140)
_CARD_RGB = (226, 238, 246)
_INK_RGB = (20, 24, 28)
_BARCODE_FONT = os.path.join(os.path.dirname(barcode.__file__), "fonts", "DejaVuSansMono.ttf")


def mm_to_px(mm: float, dpi: int) -> int:
    """Millimetres to whole pixels at ``dpi``: ``mm_to_px(85.6, 300) == 1011``."""
    return round(mm * dpi / 25.4)


def card_size_px(dpi: int = 300) -> tuple[int, int]:
    """The card's (width, height) in pixels at ``dpi``."""
    return mm_to_px(CARD_WIDTH_MM, dpi), mm_to_px(CARD_HEIGHT_MM, dpi)


def _font(size_px: int) -> ImageFont.FreeTypeFont:
    # Pillow's built-in scalable font: no dependency on the fonts a machine happens to have.
    return ImageFont.load_default(size=max(size_px, 6))


def render_barcode(payload: str, *, symbology: str = "Code128", module_px: int, bar_height_px: int, dpi: int = 300) -> Image.Image:
    """The bars alone (with quiet zones, without text) as an RGB image, modules ``module_px`` wide.

    ``symbology`` is "Code128" or "EAN13" (for distractor products in scenes).
    """
    cls = {"Code128": barcode.Code128, "EAN13": barcode.EAN13}[symbology]
    code = cls(payload, writer=ImageWriter(dpi=dpi))
    # python-barcode positions modules in float millimetres; a hair over a whole pixel keeps every
    # module exactly module_px wide instead of alternating 4/5/6 px from rounding.
    px_mm = 25.4 / dpi
    options = {
        "module_width": (module_px + 1e-3) * px_mm,
        "module_height": bar_height_px * px_mm,
        "quiet_zone": (QUIET_ZONE_MODULES * module_px + 1e-3) * px_mm,
        "write_text": False,
        "margin_top": 0,
        "margin_bottom": 0,
        "dpi": dpi,
    }
    return code.render(options).convert("RGB")


def _module_count(payload: str) -> int:
    return len(barcode.Code128(payload).build()[0])


def render_card(
    contract: str,
    issue: int | None,
    *,
    name: str = DEFAULT_NAME,
    address: str = DEFAULT_ADDRESS,
    utility: str = DEFAULT_UTILITY,
    dpi: int = 300,
    payload: str | None = None,
    card_format: CardFormat = CARD_V1,
) -> Image.Image:
    """A client card at true size as an RGBA image (transparent outside the rounded corners).

    The barcode (Code 128) encodes ``card_format.encode(contract, issue)`` (spec v1 by default);
    ``payload`` overrides it (another company's card, a card with bad check digits). The printed
    contract number is ``contract``, whatever the format.

    >>> render_card("0012345678", 1, payload="LE00123456780169").size   # a bad-check card
    (1011, 638)
    """
    if payload is None:
        payload = card_format.encode(contract, issue)
    width, height = card_size_px(dpi)

    def px(mm: float) -> int:
        return mm_to_px(mm, dpi)

    card = Image.new("RGBA", (width, height), _CARD_RGB + (255,))
    draw = ImageDraw.Draw(card)

    band_h = px(9.5)
    draw.rectangle((0, 0, width, band_h), fill=_BAND_RGB)
    draw.text((px(5), band_h // 2), utility, font=_font(px(5.0)), fill=(255, 255, 255), anchor="lm")
    draw.text((width - px(5), band_h // 2), "CLIENT CARD", font=_font(px(2.8)), fill=(255, 255, 255), anchor="rm")

    text_font = _font(px(3.2))
    y = band_h + px(3.5)
    draw.text((px(5), y), name, font=_font(px(4.0)), fill=_INK_RGB)
    y += px(5.8)
    draw.text((px(5), y), f"Contract no. {contract}", font=text_font, fill=_INK_RGB)
    y += px(4.6)
    draw.text((px(5), y), address, font=text_font, fill=_INK_RGB)

    # The barcode: as wide a module as fits the card with its quiet zones and a margin.
    modules = _module_count(payload) + 2 * QUIET_ZONE_MODULES
    module_px = min(px(MODULE_MM), (width - 2 * px(3)) // modules)
    if module_px < 1:
        raise ValueError("payload too long to fit a readable barcode on the card")
    bars = render_barcode(payload, module_px=module_px, bar_height_px=px(BAR_HEIGHT_MM), dpi=dpi)
    text_h = px(3.0)
    panel_h = bars.height + text_h + px(2.5)
    panel_top = height - panel_h - px(2.5)
    panel_left = (width - bars.width) // 2
    draw.rectangle((panel_left, panel_top, panel_left + bars.width - 1, panel_top + panel_h - 1), fill=(255, 255, 255))
    card.paste(bars, (panel_left, panel_top + px(1.0)))
    draw.text(
        (width // 2, panel_top + px(1.0) + bars.height + px(0.4)),
        payload,
        font=ImageFont.truetype(_BARCODE_FONT, text_h),
        fill=_INK_RGB,
        anchor="mt",
    )

    # Rounded corners: transparent outside, so scenes and printouts show the card's true outline.
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, width - 1, height - 1), radius=px(CARD_CORNER_MM), fill=255)
    card.putalpha(mask)
    return card


def render_product_label(ean13: str, *, dpi: int = 300, text: str = "Rye bread 500 g") -> Image.Image:
    """A product label with an EAN-13 (0.33 mm modules, 60 x 40 mm): the thing a client shows by mistake.

    ``ean13`` is 12 digits (the check digit is added) or 13 digits.
    """

    def px(mm: float) -> int:
        return mm_to_px(mm, dpi)

    label = Image.new("RGBA", (px(60), px(40)), (250, 246, 232, 255))
    draw = ImageDraw.Draw(label)
    draw.text((px(4), px(3)), text, font=_font(px(4.0)), fill=(120, 30, 20))
    bars = render_barcode(ean13, symbology="EAN13", module_px=px(0.33), bar_height_px=px(20), dpi=dpi)
    left = (label.width - bars.width) // 2
    label.paste(bars, (left, px(11)))
    full = barcode.EAN13(ean13).get_fullcode()
    draw.text(
        (label.width // 2, px(11) + bars.height + px(0.5)),
        full,
        font=ImageFont.truetype(_BARCODE_FONT, px(3.0)),
        fill=_INK_RGB,
        anchor="mt",
    )
    return label


def save_card(path: str | os.PathLike, contract: str, issue: int, **card_options) -> Path:
    """Render a card and write it: ``.png`` (with its dpi recorded) or ``.pdf`` (one page, true size).

    ``card_options`` are :func:`render_card`'s keywords. Returns the path written.
    """
    path = Path(path)
    dpi = card_options.get("dpi", 300)
    card = render_card(contract, issue, **card_options)
    suffix = path.suffix.lower()
    if suffix == ".png":
        card.save(path, dpi=(dpi, dpi))
    elif suffix == ".pdf":
        # PDF has no alpha: the rounded corners go white, the page is the card's size. A palette
        # image is stored losslessly (an RGB one would be JPEG-compressed, blurring bar edges).
        flat = Image.new("RGB", card.size, (255, 255, 255))
        flat.paste(card, mask=card.getchannel("A"))
        flat.quantize(colors=64, dither=Image.Dither.NONE).save(path, resolution=float(dpi))
    else:
        raise ValueError(f"{path}: write .png or .pdf")
    return path
