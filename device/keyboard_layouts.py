"""The POS's keyboard layouts as data: which key, with which modifier, types each character.

A USB keyboard sends key positions, not characters: the host turns them into characters with its
own layout, so the kiosk must press, for each character, the key that the POS's layout puts it on
(on a French AZERTY host the digits need Shift). A layout here is named as XKB names it
(``us``, ``lv``, ``de``, ``fr``; the ``basic`` variant of each) and maps each character the kiosk
may type -- printable ASCII, Tab and Enter, all a card's fields and the template can hold -- to a
:class:`Keystroke`: the modifier byte and the HID usage code of the key (USB HID Usage Tables,
keyboard page 0x07)::

    >>> layout("us").keystroke("A")
    Keystroke(modifiers=2, usage=4)
    >>> layout("fr").keystroke("1"), layout("de").keystroke("z")
    (Keystroke(modifiers=2, usage=30), Keystroke(modifiers=0, usage=28))
    >>> layout("de").keystrokes("1^2")
    Traceback (most recent call last):
    ...
    ValueError: the 'de' keyboard layout cannot type '^': it types printable ASCII, Tab and Enter, but not ^`

The tables are written as XKB's files are (``/usr/share/X11/xkb/symbols/<name>``): each key by its
XKB name with its symbols per level (plain, Shift, AltGr), the US table whole and every other layout
as its differences from it, so a table can be read against its XKB file key by key. A character is
only in a layout when the key types it directly both in XKB's variant and in the Windows layout of
the same country: where either has a dead key (German ``^``, French ``~``), pressing it would
change the next character, so the character is left out and asking for it is a ``ValueError``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

#: The modifier byte of each level of a key: plain, Left Shift, AltGr (Right Alt; on Windows and
#: in XKB's ``level3(ralt_switch)``, which all four layouts include, Right Alt is AltGr).
LEVEL_MODIFIERS = (0x00, 0x02, 0x40)

#: The characters the kiosk may ever type: what a card's fields and the template can hold.
TYPEABLE = frozenset(string.digits + string.ascii_letters + string.punctuation + " \t\n")

#: In a key's symbols, this stands for "nothing the kiosk types": a dead key, a letter outside
#: ASCII (é, ß, ü), or no symbol on that level.
NONE = " "

_LETTER_ROWS = {"AD": "qwertyuiop", "AC": "asdfghjkl", "AB": "zxcvbnm"}

#: The HID usage code (keyboard page 0x07) of each key, by its XKB name: what the kiosk sends.
KEY_USAGE: Mapping[str, int] = {
    **{f"{row}{n:02}": 0x04 + ord(letter) - ord("a") for row, letters in _LETTER_ROWS.items() for n, letter in enumerate(letters, 1)},
    **{f"AE{n:02}": 0x1E + n - 1 for n in range(1, 11)},  # 1 ... 9, 0
    "RTRN": 0x28,
    "TAB": 0x2B,
    "SPCE": 0x2C,
    "AE11": 0x2D,  # - on US
    "AE12": 0x2E,  # = on US
    "AD11": 0x2F,  # [ on US
    "AD12": 0x30,  # ] on US
    # The key above Enter (US \, German #). A keyboard with the ISO Enter sends 0x32 there, but
    # Linux and Windows read 0x31 and 0x32 as the same key, so one code serves every layout here.
    "BKSL": 0x31,
    "AC10": 0x33,  # ; on US
    "AC11": 0x34,  # ' on US
    "TLDE": 0x35,  # ` on US
    "AB08": 0x36,  # , on US
    "AB09": 0x37,  # . on US
    "AB10": 0x38,  # / on US
    "LSGT": 0x64,  # the ISO key beside Left Shift (< > on German and French keyboards)
}

#: Tab, Enter and Space: the same key, unshifted, on every layout.
_FIXED_KEYS = {"\t": "TAB", "\n": "RTRN", " ": "SPCE"}

#: XKB ``us(basic)``: each key's symbols, plain then Shift.
US_KEYS: Mapping[str, str] = {
    "TLDE": "`~",
    **{f"AE{n:02}": digit + shifted for n, (digit, shifted) in enumerate(zip("1234567890", "!@#$%^&*()", strict=True), 1)},
    "AE11": "-_",
    "AE12": "=+",
    **{f"{row}{n:02}": letter + letter.upper() for row, letters in _LETTER_ROWS.items() for n, letter in enumerate(letters, 1)},
    "AD11": "[{",
    "AD12": "]}",
    "BKSL": "\\|",
    "AC10": ";:",
    "AC11": "'\"",
    "AB08": ",<",
    "AB09": ".>",
    "AB10": "/?",
}

#: Each layout's keys that differ from :data:`US_KEYS` (a space: nothing the kiosk types there).
DIFFERENCES: Mapping[str, Mapping[str, str]] = {
    "us": {},
    # XKB lv(basic), Windows "Latvian (QWERTY)": US for every ASCII key, the Latvian letters on
    # AltGr, so digits are unshifted. But the variants Latvians also use latch AltGr on a key of
    # their own: lv(apostrophe) and lv(ergonomic) on the ' key, lv(tilde) on the ` key. Pressed
    # there, ' or ` would turn the next letter into a Latvian one, so both are left out of lv.
    "lv": {"TLDE": " ~", "AC11": ' "'},
    # XKB de(basic), Windows "German": QWERTZ (y and z swapped), ^ ` and ´ dead, the brackets,
    # braces, @ \ | and ~ on AltGr. Left out: ^ and ` (dead keys on both).
    "de": {
        "TLDE": "  ",  # dead ^, °
        "AE02": '2"',
        "AE03": "3 ",  # §
        "AE06": "6&",
        "AE07": "7/{",
        "AE08": "8([",
        "AE09": "9)]",
        "AE10": "0=}",
        "AE11": " ?\\",  # ß
        "AE12": "  ",  # dead ´ and `
        "AD01": "qQ@",
        "AD06": "zZ",
        "AD11": "  ",  # ü
        "AD12": "+*~",
        "AC10": "  ",  # ö
        "AC11": "  ",  # ä
        "BKSL": "#'",
        "AB01": "yY",
        "AB08": ",;",
        "AB09": ".:",
        "AB10": "-_",
        "LSGT": "<>|",
    },
    # XKB fr(basic), Windows "French (Legacy, AZERTY)" -- not the 2019 AFNOR layout, XKB fr(afnor):
    # a/q and z/w swapped, m on the ; key, the digits on Shift. Left out: ~ and ` (dead on Windows's
    # AltGr+2 and AltGr+7; XKB's ~ on Shift+² has no Windows twin).
    "fr": {
        "TLDE": "  ",  # ²
        "AE01": "&1",
        "AE02": " 2",  # é
        "AE03": '"3#',
        "AE04": "'4{",
        "AE05": "(5[",
        "AE06": "-6|",
        "AE07": " 7",  # è
        "AE08": "_8\\",
        "AE09": " 9^",  # ç
        "AE10": " 0@",  # à
        "AE11": ") ]",  # °
        "AE12": "=+}",
        "AD01": "aA",
        "AD02": "zZ",
        "AD11": "  ",  # dead ^ and ¨
        "AD12": "$ ",  # £
        "AC01": "qQ",
        "AC10": "mM",
        "AC11": " %",  # ù
        "BKSL": "* ",  # µ
        "AB01": "wW",
        "AB07": ",?",
        "AB08": ";.",
        "AB09": ":/",
        "AB10": "! ",  # §
        "LSGT": "<>",
    },
}


@dataclass(frozen=True)
class Keystroke:
    """One key pressed with its modifiers: ``modifiers`` is the report's first byte (0x02 Left
    Shift, 0x40 Right Alt), ``usage`` the key's HID usage code (keyboard page 0x07)."""

    modifiers: int
    usage: int


@dataclass(frozen=True)
class KeyboardLayout:
    """A host keyboard layout: the keystroke that types each character it can type.

    ``layout("fr").keystroke("a")`` is ``Keystroke(0, 0x14)``: on AZERTY, a is where US has q.
    """

    name: str
    keystrokes_by_char: Mapping[str, Keystroke]

    def keystroke(self, char: str) -> Keystroke:
        """The keystroke that types ``char``; a ``ValueError`` naming it if this layout cannot."""
        found = self.keystrokes_by_char.get(char)
        if found is None:
            raise ValueError(self._refusal(char))
        return found

    def keystrokes(self, text: str) -> list[Keystroke]:
        """The keystrokes of ``text``, all checked before any is returned (nothing is half typed
        because of a character the layout lacks)."""
        return [self.keystroke(char) for char in text]

    def _refusal(self, char: str) -> str:
        missing = "".join(sorted(TYPEABLE - self.keystrokes_by_char.keys()))
        can = "printable ASCII, Tab and Enter" + (f", but not {missing}" if missing else "")
        return f"the {self.name!r} keyboard layout cannot type {ascii(char)}: it types {can}"


def _build(name: str, differences: Mapping[str, str]) -> KeyboardLayout:
    """The layout of :data:`US_KEYS` with ``differences``; a character on two keys is a mistake in
    the table, and so is a character the kiosk never types."""
    found = {char: Keystroke(0x00, KEY_USAGE[key]) for char, key in _FIXED_KEYS.items()}
    for key, symbols in {**US_KEYS, **differences}.items():
        if len(symbols) > len(LEVEL_MODIFIERS):
            raise ValueError(f"layout {name!r}: {key} has {len(symbols)} levels, the kiosk presses {len(LEVEL_MODIFIERS)}")
        for modifiers, char in zip(LEVEL_MODIFIERS, symbols, strict=False):
            if char == NONE:
                continue
            if char not in TYPEABLE or char in found:
                raise ValueError(f"layout {name!r}: {ascii(char)} on {key} is {'typed elsewhere' if char in found else 'not ASCII'}")
            found[char] = Keystroke(modifiers, KEY_USAGE[key])
    return KeyboardLayout(name, found)


#: Every layout the kiosk can type in, by its XKB name.
LAYOUTS: Mapping[str, KeyboardLayout] = {name: _build(name, differences) for name, differences in DIFFERENCES.items()}

#: The layout when none is configured.
DEFAULT_LAYOUT = "us"


def layout(name: str = DEFAULT_LAYOUT) -> KeyboardLayout:
    """The layout called ``name`` (an XKB layout name); a ``ValueError`` naming the ones known.

    >>> layout("sv")
    Traceback (most recent call last):
    ...
    ValueError: no keyboard layout 'sv': the kiosk types in de, fr, lv, us
    """
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"no keyboard layout {name!r}: the kiosk types in {', '.join(sorted(LAYOUTS))}") from None
