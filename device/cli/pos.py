"""`kiosk pos test`: hand a test line to the counter's POS, to check the wiring and the keyboard layout."""

from __future__ import annotations

import sys

from device.cli import add_command, add_group, load_config

HELP = {"pos": "the hand-off to the counter's POS: hand it a test line"}

#: The test card's fields: the card `kiosk testcard` prints by default, and spec v1's example.
TEST_CONTRACT, TEST_ISSUE, TEST_SEQ = "0012345678", 1, 0
#: How long the test waits for the POS software's poll (pos.output = "http"): time to start a poll by hand.
POLL_WAIT_S = 60.0


def register(sub) -> None:
    commands = add_group(
        sub,
        "pos",
        HELP["pos"],
        "The kiosk hands each identification to the counter's POS as pos.output says: typed as a USB\n"
        "keyboard (pos.hid_device, in pos.keyboard_layout), sent on a serial line (pos.serial_device), or\n"
        "answered to the POS software's long poll (pos.http_listen).",
        example="kiosk pos test",
        dest="pos_command",
    )
    add_command(commands, "test", cmd_pos_test)


def cmd_pos_test(args) -> int:
    """Hand a test line to the POS as the kiosk would.

    Fills pos.template with a test card's fields (contract 0012345678, issue 1, seq 0) and hands the
    line to the configured link, as an identification would be: typed into the POS's focused field
    (open an empty text field there first), sent on the serial line, or answered to the POS software's
    poll (pos.output = "http": it waits up to a minute for one; stop the daemon first, it holds the
    address). What arrives shows whether the wiring and pos.keyboard_layout are right. Exit 0 when
    the POS took the line, 1 with the cause when not (or when pos.output is "none").

    Example: kiosk pos test --config /etc/kiosk/kiosk.toml
    """
    from device.card import CARD_V1
    from device.outputs.pos.link import PosOffline
    from device.outputs.pos.output import make_link
    from device.pos_template import PosFields, render

    pos = load_config(args).pos
    if pos.output == "none":
        print(
            'kiosk pos test: pos.output is "none": nothing is handed to a POS (set it to "keyboard", "serial" or "http")', file=sys.stderr
        )
        return 1
    fields = PosFields(contract=TEST_CONTRACT, issue=TEST_ISSUE, payload=CARD_V1.encode(TEST_CONTRACT, TEST_ISSUE), seq=TEST_SEQ)
    line = render(pos.template, fields)
    where = {
        "keyboard": f"typed into {pos.hid_device} (layout {pos.keyboard_layout})",
        "serial": f"sent on {pos.serial_device}",
        "http": f"answered to the POS software's GET /v1/scan on {pos.http_listen} (waiting up to {POLL_WAIT_S:g} s for it)",
    }[pos.output]
    print(f"test line (pos.template with a test card: contract {TEST_CONTRACT}, issue {TEST_ISSUE}, seq {TEST_SEQ}): {line!r}, {where}")
    sys.stdout.flush()  # before the wait: a technician sees what the kiosk waits for
    link = make_link(pos, poll_wait_s=POLL_WAIT_S)
    try:
        link.hand_over(line)
    except PosOffline as error:
        print(f"kiosk pos test: POS offline: {error}", file=sys.stderr)
        return 1
    finally:
        link.close()
    print("handed over: the POS took the whole line")
    return 0
