"""``kiosk testcard``: a printable client card (spec v1) for technicians to test a kiosk.

The card is drawn at true size (ID-1, 85.60 x 53.98 mm) by :mod:`device.tools.synth.card`: a PDF page
of exactly the card, or a PNG at 300 dpi (1011 x 638 pixels, the dpi recorded in the file), with
the payload printed under the barcode::

    kiosk testcard --contract 0012345678 --out card.pdf          # issue 1
    kiosk testcard --contract 0012345678 --issue 2 --out card.png --name "Test Counter 5"

Print it at 100 % ("actual size", no "fit to page"): the barcode's narrow bar is 0.42 mm.
A contract that is not 10 digits, or is all zeros, is refused (exit 2): no kiosk would accept it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from device.card import CARD_V1, Card, identify
from device.redact import mask_contract

#: Exit code for a refused contract, issue or output name (the usage error code, like argparse's).
EXIT_USAGE = 2
#: The output formats, by file name ending.
SUFFIXES = (".pdf", ".png")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contract", required=True, metavar="DIGITS", help="contract number: 10 digits, not all zeros (e.g. 0012345678)")
    p.add_argument("--issue", type=int, default=1, metavar="N", help="card issue number 1-99 (default 1: the first card of a contract)")
    p.add_argument(
        "--out", required=True, metavar="PATH", help="where to write the card: PATH.pdf (one page, card size) or PATH.png (300 dpi)"
    )
    p.add_argument("--name", default="Test Card", help='name printed on the card (default "Test Card")')
    p.add_argument("--address", default="Kiosk test, not a client", help="the address line printed on the card")


def check(contract: str, issue: int, out: str) -> str | None:
    """Why these cannot make a test card a kiosk would accept (a message), or None when they can."""
    if len(contract) != CARD_V1.contract_digits or not all("0" <= c <= "9" for c in contract):
        return f"--contract {contract!r}: a contract number is exactly {CARD_V1.contract_digits} digits 0-9, e.g. 0012345678"
    if not 1 <= issue <= 99:
        return f"--issue {issue}: the card issue is 1-99 (1 for a contract's first card)"
    if not out.lower().endswith(SUFFIXES):
        return f"--out {out}: the name must end in .pdf (for printing) or .png (300 dpi image)"
    if int(contract) == 0:
        return f"--contract {contract}: all zeros is not a contract number (spec v1); no kiosk would accept this card"
    verdict = identify(CARD_V1.encode(contract, issue), min(CARD_V1.symbologies), (CARD_V1,))
    if not isinstance(verdict, Card):  # any rule of the spec not checked above
        return f"--contract {contract}: not a valid contract number ({verdict.reason}); no kiosk would accept this card"
    return None


def main(args, out: TextIO = sys.stdout) -> int:
    """Write the card; 0 when written, 2 when the contract, issue or output name is refused, 1 on a write error."""
    from device.tools.synth.card import CARD_HEIGHT_MM, CARD_WIDTH_MM, save_card

    problem = check(args.contract, args.issue, args.out)
    if problem:
        print(f"kiosk testcard: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        path = save_card(args.out, args.contract, args.issue, name=args.name, address=args.address)
    except OSError as e:
        print(f"kiosk testcard: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    kind = "PDF page" if path.suffix.lower() == ".pdf" else "PNG at 300 dpi"
    out.write(
        f"{path}: test card for contract {mask_contract(args.contract)} issue {args.issue}, "
        f"{CARD_WIDTH_MM:.2f} x {CARD_HEIGHT_MM:.2f} mm ({kind}).\n"
        "Print it at 100 % (actual size, no fit to page), then hold it up to the kiosk: "
        "green LED and one beep, and the identification in `kiosk queue list`.\n"
    )
    return 0
