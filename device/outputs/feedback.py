"""Feedback to the client and the operator: LEDs, a buzzer and an optional button, with gpiozero.

:class:`Feedback` is an output (see :mod:`device.outputs`): green LED and one short beep
when a client is identified (after the commit), red LED and a double beep for a barcode that is
not a card, a longer red LED and one long beep for a replaced card (refused, after the commit of
its refusal), the amber LED blinking while any fault is active. The optional button calls
``on_button`` (the daemon's ``Kiosk.new_presentation``) so the same card identifies again at once::

    feedback = Feedback.from_config(cfg, on_button=kiosk.new_presentation)
    kiosk.add_output(feedback)   # closed by the kiosk when it stops

Nothing here may stop an identification: a machine without GPIO logs one warning and runs
without feedback, a pin that cannot be opened disables that device only, and every light or
beep runs in gpiozero's background threads, so the daemon's thread never sleeps here.

:data:`SIGNALS` says in words what each event looks and sounds like (for ``kiosk demo`` and
docs/WIRING.md); :func:`diag_gpio` is ``kiosk diag gpio``.

gpiozero is imported only when pins are opened, so commands that merely describe the signals
stay quick.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TextIO

from device.config import Config, FeedbackSection
from device.events import Event, FaultCleared, FaultRaised, Identified, NotACard, Refused
from device.outputs.base import Output

if TYPE_CHECKING:  # gpiozero is imported only when pins are opened
    from gpiozero import Device
    from gpiozero.pins import Factory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timings:
    """How long each light and beep lasts, in seconds (tests shorten them)."""

    lit_s: float = 1.0  # green or red LED after an event
    beep_s: float = 0.08  # one beep
    beep_gap_s: float = 0.12  # silence between the two beeps of a double beep
    long_beep_s: float = 0.8  # the "card replaced" beep: long, unlike the short ones
    fault_on_s: float = 0.2  # amber: short flash, long pause, unlike the 1 s steady green/red
    fault_off_s: float = 0.8
    bounce_s: float = 0.05  # button debounce


DEFAULT_TIMINGS = Timings()


def _signals(t: Timings) -> dict[type[Event], str]:
    ms = round(t.beep_s * 1000)
    return {
        Identified: f"green LED {t.lit_s:g} s + one short beep ({ms} ms)",
        Refused: f"red LED {2 * t.lit_s:g} s + one long beep ({round(t.long_beep_s * 1000)} ms): a lost card, replaced by a newer one",
        NotACard: f"red LED {t.lit_s:g} s + a double beep (2 x {ms} ms)",
        FaultRaised: f"amber LED blinks ({t.fault_on_s:g} s on / {t.fault_off_s:g} s off) while any fault is active; no sound",
        FaultCleared: "amber LED off once every fault has cleared",
    }


#: Event type -> what the client or operator sees and hears, one line each.
SIGNALS: dict[type[Event], str] = _signals(DEFAULT_TIMINGS)


@dataclass(frozen=True)
class Role:
    """One kind of feedback device: its config key, what to call it, and how to open it."""

    key: str
    label: str
    opens: Callable[..., Device]  # (pin, pin_factory, timings) -> gpiozero device


def _led(pin: str, factory: Factory, timings: Timings) -> Device:
    from gpiozero import LED

    return LED(pin, pin_factory=factory)


def _buzzer(pin: str, factory: Factory, timings: Timings) -> Device:
    from gpiozero import Buzzer

    return Buzzer(pin, pin_factory=factory)


def _button(pin: str, factory: Factory, timings: Timings) -> Device:
    from gpiozero import Button

    # Wired to ground, so the internal pull-up holds it high until pressed.
    return Button(pin, pull_up=True, bounce_time=timings.bounce_s or None, pin_factory=factory)


#: The devices, in the order diag_gpio tests them.
ROLES: dict[str, Role] = {
    "green": Role("green_pin", "green LED", _led),
    "red": Role("red_pin", "red LED", _led),
    "amber": Role("amber_pin", "amber LED", _led),
    "buzzer": Role("buzzer_pin", "buzzer", _buzzer),
    "button": Role("button_pin", "button", _button),
}

#: gpiozero's registry of pin factories (``feedback.pin_factory`` names one of them).
FACTORY_ENTRY_POINTS = "gpiozero_pin_factories"


def pin_factory_names() -> list[str]:
    """The pin factories gpiozero has registered (entry points), e.g. ["lgpio", "mock", ...]."""
    return sorted(ep.name for ep in entry_points(group=FACTORY_ENTRY_POINTS))


NO_GPIO = 'no GPIO found: feedback off; set feedback.pin_factory = "mock" to silence'


class GPIOUnavailable(Exception):
    """No pin factory could be loaded; the message says why and what to set."""


def make_pin_factory(name: str) -> tuple[Factory, bool]:
    """The gpiozero pin factory for ``feedback.pin_factory`` = ``name``, and whether the caller owns it.

    "" is gpiozero's own choice (honouring ``GPIOZERO_PIN_FACTORY``), shared through
    ``gpiozero.Device.pin_factory``: not owned. A named factory is a new instance: owned, so
    close it when done. Raises :class:`GPIOUnavailable`.

        factory, owned = make_pin_factory("mock")
    """
    if name == "":
        from gpiozero import Device
        from gpiozero.exc import BadPinFactory

        # gpiozero warns once per factory it falls back from; that is four warnings for one fact.
        with warnings.catch_warnings(record=True) as fallbacks:
            warnings.simplefilter("always")
            try:
                Device.ensure_pin_factory()
            except BadPinFactory as e:
                for w in fallbacks:
                    log.debug("gpiozero: %s", w.message)
                raise GPIOUnavailable(NO_GPIO) from e
        for w in fallbacks:
            log.debug("gpiozero: %s", w.message)
        return Device.pin_factory, False
    found = [ep for ep in entry_points(group=FACTORY_ENTRY_POINTS) if ep.name == name]
    if not found:
        raise GPIOUnavailable(
            f'feedback.pin_factory = "{name}" is not one of {", ".join(repr(n) for n in pin_factory_names())}: feedback off'
        )
    try:
        return found[0].load()(), True
    except Exception as e:  # ImportError (library missing), OSError (no chip), pigpiod not running...
        raise GPIOUnavailable(f'feedback.pin_factory = "{name}" cannot be used ({type(e).__name__}: {e}): feedback off') from e


def _why(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    if type(error).__name__ == "GPIOPinInUse":
        text += " (two feedback pins set to the same GPIO?)"
    elif "busy" in str(error).lower():
        text += " (another program holds it: is the kiosk daemon running? `sudo systemctl stop kiosk` first)"
    return text


class FeedbackDevices:
    """The fitted feedback devices on one pin factory.

    ``devices`` maps role ("green", "red", "amber", "buzzer", "button") to its gpiozero device;
    a pin set to "" is not fitted (in ``not_fitted``); a pin that cannot be opened is logged and
    left out (its reason in ``problems``). Raises :class:`GPIOUnavailable` when there is no GPIO.

        with FeedbackDevices(cfg.feedback) as pins:
            pins.devices["green"].on()
    """

    def __init__(
        self, section: FeedbackSection, pin_factory: Factory | None = None, *, timings: Timings = DEFAULT_TIMINGS, log_problems: bool = True
    ):
        if pin_factory is None:
            self.factory, self._owns_factory = make_pin_factory(section.pin_factory)
        else:
            self.factory, self._owns_factory = pin_factory, False
        self.pins: dict[str, str] = {}  # role -> configured pin name, for every fitted role
        self.devices: dict = {}
        self.problems: dict[str, str] = {}
        self.not_fitted: list[str] = []
        for name, role in ROLES.items():
            pin = getattr(section, role.key)
            if pin == "":
                self.not_fitted.append(name)
                continue
            self.pins[name] = pin
            try:
                self.devices[name] = role.opens(pin, self.factory, timings)
            except Exception as e:  # wrong name, not a GPIO, busy, used twice, no permission
                self.problems[name] = _why(e)
                if log_problems:
                    log.warning(
                        "feedback.%s = %r (%s) cannot be opened: %s; %s off", role.key, pin, role.label, self.problems[name], role.label
                    )

    def name(self, role: str) -> str:
        """The pin as configured, with gpiozero's name when they differ: "BOARD11 (GPIO17)"."""
        pin = self.pins.get(role, "")
        device = self.devices.get(role)
        actual = getattr(getattr(getattr(device, "pin", None), "info", None), "name", pin)
        return pin if actual == pin else f"{pin} ({actual})"

    def close(self) -> None:
        """Release every pin (and the factory when it is ours); safe to call twice."""
        for device in self.devices.values():
            try:
                if hasattr(device, "off"):
                    device.off()  # closing alone leaves a lit LED lit
                device.close()
            except Exception:
                log.exception("closing %r", device)
        self.devices = {}
        if self._owns_factory and self.factory is not None:
            self.factory.close()
        self.factory = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Feedback(Output):
    """Lights and beeps for the daemon's events (an :class:`~device.outputs.Output`); the button calls ``on_button``.

    :param section: ``cfg.feedback``: pins and the pin factory.
    :param on_button: called (in gpiozero's thread) when the operator presses the button.
    :param pin_factory: a gpiozero factory instance (tests); overrides ``section.pin_factory``.
    :param timings: how long lights and beeps last (tests shorten them).

    Thread-safe: events may come from any thread. Every light or beep runs in gpiozero's
    background threads, so each event returns at once::

        feedback = Feedback.from_config(cfg, on_button=kiosk.new_presentation)
        feedback.on_identified(Identified(record, frame_index, committed))   # green 1 s + beep
    """

    def __init__(
        self,
        section: FeedbackSection,
        *,
        on_button: Callable[[], object] | None = None,
        pin_factory: Factory | None = None,
        timings: Timings = DEFAULT_TIMINGS,
    ):
        self.timings = timings
        self.on_button = on_button
        self._lock = threading.Lock()
        self._faults: set[str] = set()
        self.unavailable = ""  # why there is no feedback at all, else ""
        self._pins: FeedbackDevices | None = None
        try:
            self._pins = FeedbackDevices(section, pin_factory, timings=timings)
        except GPIOUnavailable as e:
            self.unavailable = str(e)
            log.warning("%s", e)
            return
        button = self._pins.devices.get("button")
        if button is not None:
            button.when_pressed = self._pressed

    @classmethod
    def from_config(cls, cfg: Config, **kwargs) -> Feedback:
        """The feedback ``cfg.feedback`` describes; ``kwargs`` as for the constructor (on_button, ...)."""
        return cls(cfg.feedback, **kwargs)

    # --- the Output events ----------------------------------------------------------------

    def on_identified(self, event: Identified) -> None:
        """Green LED and one short beep (the identification is durable)."""
        t = self.timings
        with self._lock:
            self._do("green", lambda led: led.blink(on_time=t.lit_s, off_time=0, n=1, background=True))
            self._do("buzzer", lambda bz: bz.beep(on_time=t.beep_s, off_time=t.beep_gap_s, n=1, background=True))

    def on_refused(self, event: Refused) -> None:
        """Red LED (twice as long) and one long beep: the card was replaced, the client has a newer one."""
        t = self.timings
        with self._lock:
            self._do("red", lambda led: led.blink(on_time=2 * t.lit_s, off_time=0, n=1, background=True))
            self._do("buzzer", lambda bz: bz.beep(on_time=t.long_beep_s, off_time=t.beep_gap_s, n=1, background=True))

    def on_not_a_card(self, event: NotACard) -> None:
        """Red LED and a double beep."""
        t = self.timings
        with self._lock:
            self._do("red", lambda led: led.blink(on_time=t.lit_s, off_time=0, n=1, background=True))
            self._do("buzzer", lambda bz: bz.beep(on_time=t.beep_s, off_time=t.beep_gap_s, n=2, background=True))

    def on_fault_raised(self, event: FaultRaised) -> None:
        """A fault started: the amber LED blinks until every fault has cleared."""
        t = self.timings
        with self._lock:
            first = not self._faults
            self._faults.add(event.name)
            if first:
                self._do("amber", lambda led: led.blink(on_time=t.fault_on_s, off_time=t.fault_off_s, background=True))

    def on_fault_cleared(self, event: FaultCleared) -> None:
        """A fault cleared: amber off when it was the last one."""
        with self._lock:
            self._faults.discard(event.name)
            if not self._faults:
                self._do("amber", lambda led: led.off())

    @property
    def faults(self) -> tuple[str, ...]:
        """The faults the amber LED is showing, sorted."""
        with self._lock:
            return tuple(sorted(self._faults))

    # --- the rest -------------------------------------------------------------------------

    def status(self) -> dict:
        """What is fitted and working, for ``kiosk status``: {"on", "factory", "pins", "problems"}."""
        pins = self._pins
        if pins is None:
            return {"on": False, "factory": None, "pins": {}, "problems": {"gpio": self.unavailable}}
        return {
            "on": bool(pins.devices),
            "factory": type(pins.factory).__name__ if pins.factory is not None else None,
            "pins": {role: pins.name(role) for role in pins.devices},
            "problems": dict(pins.problems),
        }

    def close(self) -> None:
        """Lights off, pins released. Later events do nothing."""
        with self._lock:
            if self._pins is not None:
                self._pins.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _do(self, role: str, action: Callable) -> None:
        # A device that fails at run time (pin gone, driver error) is switched off with one
        # warning rather than raising into the daemon on every event.
        device = self._pins.devices.get(role) if self._pins is not None else None
        if device is None:
            return
        try:
            action(device)
        except Exception as e:
            label = ROLES[role].label
            log.warning("%s failed (%s); %s off until restart", label, _why(e), label)
            self._pins.devices.pop(role, None)
            try:
                device.close()
            except Exception:
                pass

    def _pressed(self) -> None:
        # Runs in gpiozero's callback thread: an exception here would end that thread's work.
        log.info("button pressed: new presentation")
        if self.on_button is None:
            return
        try:
            self.on_button()
        except Exception:
            log.exception("button handler failed")


def diag_gpio(
    section: FeedbackSection,
    out: TextIO,
    pin_factory: Factory | None = None,
    *,
    timings: Timings = DEFAULT_TIMINGS,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """``kiosk diag gpio``: light each fitted LED in turn, sound the buzzer's three patterns, report the button.

    Prints each step as it happens so a technician can watch ("green LED GPIO17: on ... off").
    Returns 0, or 1 when there is no GPIO or a fitted pin could not be opened (it says which
    and why). Blocking on purpose: this is a foreground command, not the daemon.

        diag_gpio(cfg.feedback, sys.stdout)
    """

    def say(text: str, end: str = "\n") -> None:
        out.write(text + end)
        if hasattr(out, "flush"):
            out.flush()

    try:
        pins = FeedbackDevices(section, pin_factory, timings=timings, log_problems=False)  # printed below
    except GPIOUnavailable as e:
        say(f"GPIO: {e}")
        return 1
    with pins:
        say(f"GPIO: pin factory {type(pins.factory).__name__} (feedback.pin_factory = {section.pin_factory!r})")
        width = max(len(r.label) for r in ROLES.values())
        for role, spec in ROLES.items():
            key, label = spec.key, spec.label
            head = f"{label:<{width}} "
            device = pins.devices.get(role)
            if role in pins.not_fitted:
                say(f"{head}not fitted (feedback.{key} is empty)")
            elif device is None:
                say(f"{head}{pins.pins[role]}: CANNOT OPEN: {pins.problems[role]} (feedback.{key})")
            elif role == "buzzer":
                # Each pattern the counter uses, named, with a pause between them so they are heard apart.
                patterns = (("short beep (identified)", timings.beep_s, 1), ("double beep (not a card)", timings.beep_s, 2),
                            ("long beep (card replaced)", timings.long_beep_s, 1))  # fmt: skip
                say(f"{head}{pins.name(role)}:", end=" ")
                for n, (name, on_s, count) in enumerate(patterns):
                    if n:
                        sleep(timings.lit_s / 2)
                    say(f"{name} ...", end=" ")
                    device.beep(on_time=on_s, off_time=timings.beep_gap_s, n=count, background=False)
                say("done")
            elif role == "button":
                state = "PRESSED (held down, or shorted to ground?)" if device.is_pressed else "released"
                say(f"{head}{pins.name(role)}: {state}")
            else:
                say(f"{head}{pins.name(role)}: on ...", end=" ")
                device.on()
                sleep(timings.lit_s)
                device.off()
                say("off")
        return 1 if pins.problems else 0
