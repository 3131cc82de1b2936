"""``kiosk demo``: the whole kiosk on this machine, with no camera and no GPIO, in under a minute.

It starts the reference central as a real process on a free loopback port, renders a counter
video (clients showing cards one after another at various angles, among them a card with bad
check digits, another company's card and a product), and runs the real daemon on it with mock
GPIO. Before the video, a re-issue is recorded at the central (contract ``4000000017``'s card
is at issue 2: its issue 1 was lost) and the kiosk syncs the signed replaced-card list; the video
shows the lost card too, which must be refused. It prints what happens as it happens -- each
presentation entering the view, each identification or refusal when committed, what the LEDs
and buzzer do, each delivery, faults -- then a summary, and checks the run against the video's
truth::

    kiosk demo                               # rendered video, exit 0 only if the run was right
    kiosk demo --camera v4l2:/dev/video0     # a real camera and a printed card, until Ctrl-C
    kiosk demo --keep demo-run               # keep video, truth, outbox and central database
    kiosk demo --video demo-run/counter.avi  # play a kept (or recorded) video again
    kiosk demo --pos keyboard                # also type each identification into a POS on this machine

With ``--pos keyboard`` the kiosk types each identification (``pos.template``, ``{contract}`` and
Enter) as a USB keyboard into a FIFO in the demo's folder where ``/dev/hidg0`` would be; a thread
reads it as the counter PC would (:class:`device.tools.fifo_pos.FifoPos`) and the demo prints each
line the POS received. The run then also needs exactly one typed line per identification.

The exit code tells the truth: 0 only when every valid card shown was identified once and
delivered once, the replaced card refused once and its refusal delivered, and nothing else was
identified (and, with ``--pos keyboard``, each identification typed once); 1 (with the reasons) otherwise; 130 on Ctrl-C
before the end of a video. Everything lives in a temporary folder that is removed at the end
(unless ``--keep``), and the central is stopped whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from device.card import Card, identify
from device.events import Dead, Delivered, Event, FaultCleared, FaultRaised, FrameScanned, Identified, NotACard, Refused
from device.outputs import Output
from device.outputs.feedback import SIGNALS
from device.redact import describe_text, mask_contract

if TYPE_CHECKING:
    from device.assembly import OutputFactory
    from device.outbox import Identification


#: The rendered counter: its frame rate, size and seed.
VIDEO_FPS = 15.0
VIDEO_SIZE = (1280, 720)
VIDEO_SEED = 0
#: File names inside the demo's folder (the same with ``--keep``).
VIDEO_NAME = "counter.avi"
TRUTH_SUFFIX = ".truth.json"
#: How long a finished video may take to deliver its identifications.
DRAIN_TIMEOUT_S = 20.0

#: Short names of the kinds of presentation (one, several), for the summary.
_KIND_SHORT = {
    "card": ("client card", "client cards"),
    "bad-check": ("card with bad check digits", "cards with bad check digits"),
    "foreign-code128": ("foreign Code 128", "foreign Code 128s"),
    "product-ean13": ("product EAN-13", "product EAN-13s"),
}


def _kinds_text(kinds: Counter) -> str:
    return ", ".join(f"{n} {_KIND_SHORT.get(k, (k, k))[n != 1]}" for k, n in kinds.items())


#: How each kind of presentation of device.tools.synth.video is described to the viewer.
_KIND_TEXT = {
    "card": "client card",
    "bad-check": "client card with bad check digits (must not be identified)",
    "foreign-code128": "another company's card, Code 128 (not a client card)",
    "product-ean13": "a product, EAN-13 (not a client card)",
}


#: The re-issue recorded at the central before the video: contract -> current issue. The video
#: shows this contract's issue 2 (the client's new card) and its lost issue 1 (refused).
REISSUED = {"4000000017": 2}


def demo_presentations():
    """The presentations of the rendered video: three clients, a product, a bad card, a loyalty
    card, and a lost card whose contract was re-issued (:data:`REISSUED`)."""
    from device.tools.synth.video import Presentation, default_presentations

    ((contract, current),) = REISSUED.items()
    return [*default_presentations(), Presentation.card(contract, current - 1, hold_s=1.2)]


# --- arguments --------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--camera",
        metavar="SOURCE",
        help="a real camera instead of the rendered video: v4l2:/dev/video0 (USB) or picamera2:0 (CSI); "
        "runs until Ctrl-C (show it a card printed with `kiosk testcard`)",
    )
    p.add_argument(
        "--video",
        metavar="PATH",
        help="play this video instead of rendering one (e.g. counter.avi kept with --keep); it is checked "
        f"against PATH's truth (counter{TRUTH_SUFFIX} beside it) when there is one",
    )
    p.add_argument(
        "--pace",
        choices=("realtime", "fast"),
        default="realtime",
        help="play the video at its frame rate (realtime, the default: as a camera would) or as fast as it is scanned",
    )
    p.add_argument("--keep", metavar="DIR", help="keep the video, its truth, the config, outbox and central database in DIR (new or empty)")
    p.add_argument(
        "--central-reject-contract",
        action="append",
        default=[],
        metavar="CONTRACT",
        help="make the central refuse identifications of this contract (repeatable): the demo must then fail",
    )
    p.add_argument("--seed", type=int, default=VIDEO_SEED, help=f"seed of the rendered video (default {VIDEO_SEED})")
    p.add_argument(
        "--pos",
        choices=("none", "keyboard"),
        default="none",
        help="keyboard: also type each identification as a USB keyboard into a POS on this machine (a FIFO read back as a host "
        "would) and print what the POS received (default none)",
    )
    p.add_argument("--unmask", action="store_true", help="show whole contract numbers")
    p.add_argument("--verbose", action="store_true", help="also show the daemon's own log (stderr)")


# --- output -----------------------------------------------------------------------------------


class Terminal:
    """One line per event, with the seconds since the demo started; safe from several threads."""

    def __init__(self, out: TextIO, started: float | None = None):
        self.out = out
        self.started = time.monotonic() if started is None else started
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def event(self, what: str, text: str) -> None:
        with self._lock:
            self.out.write(f"{self.elapsed():6.1f}s  {what:<11} {text}\n")
            self.out.flush()

    def line(self, text: str = "") -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


# --- what happened ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One identification or not-a-card reading, and the video frame it came from."""

    frame: int
    contract: str = ""
    issue: int = 0
    id: str = ""
    seq: int = 0
    text: str = ""
    reason: str = ""


@dataclass
class Record:
    """Where an identification stands at the end (``delivered``, ``dead``, ``pending``), as the
    forwarder's events said (``pending``: no event came)."""

    state: str
    reason: str = ""


@dataclass
class Verdict:
    """The demo's result: counts for the summary and the reasons it failed (none: it passed)."""

    shown: Counter = field(default_factory=Counter)
    cards_shown: int = 0
    cards_identified: int = 0
    replaced_shown: int = 0
    replaced_refused: int = 0
    refusals_delivered: int = 0
    identified: int = 0
    rejected: int = 0
    delivered: int = 0
    frames_to_read: list = field(default_factory=list)
    #: Lines the POS received (``--pos keyboard``), None without a POS.
    pos_typed: int | None = None
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _window(truth) -> tuple[int, int]:
    return truth.enter_frame, truth.left_frame


def _in(frame: int, truth) -> bool:
    start, end = _window(truth)
    return start <= frame <= end


def judge(
    truths,
    identified: list[Seen],
    not_cards: list[Seen],
    records: dict[str, Record],
    central_ids: Counter,
    *,
    run_code: int = 0,
    faults: dict | None = None,
    live: bool = False,
    unmask: bool = False,
    replaced: dict | None = None,
    refused: list[Seen] = (),
    central_refusal_ids: Counter | None = None,
) -> Verdict:
    """Check a run: every valid card shown identified once and delivered once, nothing else identified;
    every replaced card shown (``replaced``: contract -> current issue) refused once (``refused``)
    and its refusal delivered (``central_refusal_ids``), never identified.

    ``truths``: the video's :class:`~device.tools.synth.video.PresentationTruth` list, or None (a camera:
    only delivery is checked). ``records``: the outbox's final state by identification id.
    ``central_ids``: how many times the central lists each id. ``faults``: those still active at
    the end (name -> message). ``live``: a camera check, which needs at least one identification.
    """
    v = Verdict()
    v.identified = len(identified)
    v.rejected = len(not_cards)
    matched: set[int] = set()
    if truths is not None:
        for t in truths:
            v.shown[t.kind] += 1
            card = identify(t.payload, t.symbology)
            if not (t.is_card and isinstance(card, Card)):
                continue
            label = f"card {mask_contract(card.contract, unmask)} (frames {t.enter_frame}-{t.left_frame})"
            if card.issue is not None and card.issue < (replaced or {}).get(card.contract, 0):
                v.replaced_shown += 1
                refusals = [s for s in refused if _in(s.frame, t) and (s.contract, s.issue) == (card.contract, card.issue)]
                if len(refusals) != 1:
                    v.problems.append(f"replaced {label} issue {card.issue} was refused {len(refusals)} times, not once")
                else:
                    v.replaced_refused += 1
                continue  # never to be identified: an identification of it stays unmatched below
            v.cards_shown += 1
            hits = [i for i, s in enumerate(identified) if _in(s.frame, t) and (s.contract, s.issue) == (card.contract, card.issue)]
            matched.update(hits)
            if not hits:
                v.problems.append(f"{label} was shown but not identified")
                continue
            v.cards_identified += 1
            v.frames_to_read.append(identified[hits[0]].frame - t.enter_frame)
            if len(hits) > 1:
                v.problems.append(f"{label} was identified {len(hits)} times, not once")
        for i, s in enumerate(identified):
            if i not in matched:
                v.problems.append(
                    f"identified contract {mask_contract(s.contract, unmask)} issue {s.issue} at frame {s.frame}, "
                    "but no such valid card was in view then"
                )
    for s in identified:
        who = f"identification {s.seq} ({mask_contract(s.contract, unmask)})"
        record = records.get(s.id)
        at_central = central_ids.get(s.id, 0)
        if record is not None and record.state == "delivered" and at_central == 1:
            v.delivered += 1
        elif record is not None and record.state == "dead":
            v.problems.append(f"{who} was not delivered: the central refused it: {record.reason}")
        elif record is None or record.state != "delivered":
            state = record.state if record else "missing from the outbox"
            v.problems.append(f"{who} was not delivered ({state}{': ' + record.reason if record and record.reason else ''})")
        else:
            v.problems.append(f"{who} is marked delivered but the central holds it {at_central} times, not once")
    for s in refused:
        record = records.get(s.id)
        if record is not None and record.state == "delivered" and (central_refusal_ids or Counter()).get(s.id, 0) == 1:
            v.refusals_delivered += 1
        else:
            v.problems.append(
                f"refusal {s.seq} ({mask_contract(s.contract, unmask)}) was not delivered once "
                f"({record.state if record else 'missing from the outbox'})"
            )
    if live and not identified:
        v.problems.append("no card was identified (show the camera a card printed with `kiosk testcard`)")
    for name, message in (faults or {}).items():
        v.problems.append(f"{name} fault still active at the end: {message}")
    if run_code != 0:
        v.problems.append(f"the daemon exited with {run_code} (see the log above)")
    return v


#: What the demo's POS is: the link and its layout, for the lines printed.
POS_LAYOUT = "us"
POS_TEXT = f"keyboard, {POS_LAYOUT} layout"


def typed_text(line: str, unmask: bool = False) -> str:
    """A line the POS received (the demo's template: the contract and Enter), masked as contracts are, Enter as ⏎.

    >>> typed_text("4000000017\\n")
    '******0017⏎'
    """
    return mask_contract(line.removesuffix("\n"), unmask) + ("⏎" if line.endswith("\n") else "")


def judge_pos(v: Verdict, typed: list[str], identified: list[Seen], *, unmask: bool = False, error: str | None = None) -> None:
    """Add to ``v`` what the POS received: exactly one line per identification, its contract and Enter, in order."""
    v.pos_typed = len(typed)
    expected = [f"{s.contract}\n" for s in identified]
    if typed != expected:
        v.problems.append(
            f"the POS received {len(typed)} lines for {len(identified)} identifications, not one each: typed "
            f"[{', '.join(typed_text(t, unmask) for t in typed)}], identified [{', '.join(typed_text(e, unmask) for e in expected)}]"
        )
    if error is not None:
        v.problems.append(f"the POS received keyboard reports no host would type: {error}")


# --- the demo as an output: what the daemon did, frame by frame ---------------------------------


class EventPrinter(Output):
    """The demo's output: announces presentations as their frames go by and prints
    identifications, not-a-card readings, deliveries, faults and the feedback given.

    It runs in its own thread like every output; each event says which frame it came from, so
    what it prints (and what the verdict judges) does not depend on how far the camera has got.
    Deliveries come from the forwarder's events, after the outbox has recorded them
    (:attr:`records`), never from reading the outbox.
    """

    def __init__(self, terminal: Terminal, signals: dict[type[Event], str], truths=None, unmask: bool = False):
        self.terminal = terminal
        self.signals = signals
        self.truths = list(truths or [])
        self.unmask = unmask
        self.identified_seen: list[Seen] = []
        self.refused_seen: list[Seen] = []
        self.not_cards: list[Seen] = []
        self.identified_in: dict[int, int] = {}  # presentation -> identifications seen in its window
        #: What the forwarder published, by record id: delivered, or dead with the central's reason.
        self.records: dict[str, Record] = {}
        self._entered = 0
        self._left = 0

    def on_frame(self, event: FrameScanned) -> None:
        self._announce(event.frame_index)

    def on_identified(self, event: Identified) -> None:
        identification, frame_index = event.record, event.frame_index
        self._announce(frame_index)
        seen = Seen(frame_index, identification.contract, identification.card_issue, identification.id, identification.seq)
        self.identified_seen.append(seen)
        where = f"frame {frame_index}"
        k = self.presentation_at(frame_index)
        if k is not None:
            self.identified_in[k] = self.identified_in.get(k, 0) + 1
            where += f", {frame_index - self.truths[k].enter_frame} frames after it came into view"
        self.terminal.event(
            "identified",
            f"contract {mask_contract(identification.contract, self.unmask)} issue {identification.card_issue} "
            f"(identification {identification.seq}, committed to the outbox; {where})",
        )
        self._feedback(Identified)

    def on_refused(self, event: Refused) -> None:
        refusal, frame_index = event.record, event.frame_index
        self._announce(frame_index)
        self.refused_seen.append(Seen(frame_index, refusal.contract, refusal.card_issue, refusal.id, refusal.seq))
        k = self.presentation_at(frame_index)
        if k is not None:
            self.identified_in[k] = self.identified_in.get(k, 0) + 1  # answered: not "NOT identified"
        self.terminal.event(
            "REFUSED",
            f"contract {mask_contract(refusal.contract, self.unmask)} issue {refusal.card_issue}: card replaced, its current "
            f"issue is {refusal.current_issue}; not identified (refusal {refusal.seq} committed, for the central; frame {frame_index})",
        )
        self._feedback(Refused)

    def on_not_a_card(self, event: NotACard) -> None:
        reading, frame_index = event.reading, event.frame_index
        self._announce(frame_index)
        self.not_cards.append(Seen(frame_index, text=reading.symbol.text, reason=reading.rejection.reason))
        self.terminal.event(
            "not a card",
            f"{reading.symbol.symbology} {describe_text(reading.symbol.text, self.unmask)} "
            f"({reading.rejection.reason}; frame {frame_index})",
        )
        self._feedback(NotACard)

    def on_delivered(self, event: Delivered) -> None:
        for record in event.records:
            self.records[record.id] = Record("delivered")
            self.terminal.event("delivered", f"{self._who(record)} to the central")

    def on_dead(self, event: Dead) -> None:
        self.records[event.record.id] = Record("dead", event.reason)
        self.terminal.event("REFUSED", f"{self._who(event.record)}: the central refused it: {event.reason}")

    def on_fault_raised(self, event: FaultRaised) -> None:
        self.terminal.event("FAULT", f"{event.name}: {event.message}")
        self._feedback(FaultRaised)

    def on_fault_cleared(self, event: FaultCleared) -> None:
        self.terminal.event("cleared", f"{event.name} fault cleared")
        self._feedback(FaultCleared)

    def final_records(self, pending_reason: str | None) -> dict[str, Record]:
        """Every identification and refusal committed, where it stands: those the forwarder
        published nothing for are pending (``pending_reason``: its last error, if any)."""
        committed = [*self.identified_seen, *self.refused_seen]
        return {s.id: self.records.get(s.id, Record("pending", pending_reason or "")) for s in committed}

    def _who(self, record: Identification) -> str:
        kind = "refusal" if record.kind == "refusal" else "identification"
        return f"{kind} {record.seq} ({mask_contract(record.contract, self.unmask)})"

    def _feedback(self, kind: type[Event]) -> None:
        if kind in self.signals:
            self.terminal.event("  feedback", self.signals[kind])

    def _announce(self, index: int) -> None:
        # Frame events may be dropped (and a realtime source drops frames): compare with >=, never ==.
        while self._left < len(self.truths) and index >= self.truths[self._left].left_frame:
            t = self.truths[self._left]
            if t.is_card and not self.identified_in.get(self._left):
                self.terminal.event("left view", f"presentation {self._left + 1}: NOT identified")
            self._left += 1
        while self._entered < len(self.truths) and index >= self.truths[self._entered].enter_frame:
            t = self.truths[self._entered]
            self.terminal.event(
                "shown", f"presentation {self._entered + 1}/{len(self.truths)}: {self._describe(t)} (frame {t.enter_frame})"
            )
            self._entered += 1

    def _describe(self, truth) -> str:
        text = _KIND_TEXT.get(truth.kind, truth.kind)
        card = identify(truth.payload, truth.symbology)
        if isinstance(card, Card):
            text += f", contract {mask_contract(card.contract, self.unmask)} issue {card.issue}"
            if card.issue is not None and card.issue < REISSUED.get(card.contract, 0):
                text += " (lost and replaced: must be refused)"
        return text

    def presentation_at(self, frame: int) -> int | None:
        for i, t in enumerate(self.truths):
            if _in(frame, t):
                return i
        return None


# --- the run ----------------------------------------------------------------------------------


def _write_config(
    folder: Path, source: str, pace: str, central_url: str, token_file: Path, unmask: bool, public_key: Path, hid_device: Path | None = None
) -> Path:
    import tomli_w

    sections = {
        "revocations": {"enabled": True, "public_key_file": str(public_key)},
        "camera": {"source": source, "pace": pace},
        "outbox": {"path": str(folder / "outbox.db")},
        "api": {"url": central_url, "token_file": str(token_file), "backoff_base_s": 0.2, "backoff_cap_s": 2.0},
        "feedback": {"pin_factory": "mock"},
        "log": {"unmask": unmask},
        "kiosk": {"id": "demo-kiosk", "site": "demo counter"},
    }
    if hid_device is not None:  # the default template and key delay: what a counter would be given
        sections["pos"] = {"output": "keyboard", "hid_device": str(hid_device), "keyboard_layout": POS_LAYOUT}
    path = folder / "kiosk.toml"
    path.write_text(tomli_w.dumps(sections), encoding="utf-8")
    return path


def _list_keys(folder: Path) -> tuple[Path, Path, Path, str]:
    """The replaced-card list's key pair and an admin token for the demo's central, in ``folder``."""
    import os

    from device.revocations.document import generate_key_pair

    private, public = generate_key_pair()
    paths = folder / "list.key", folder / "list.pub", folder / "admin-tokens"
    admin = secrets.token_urlsafe(16)
    for path, data in zip(paths, (private, public, f"{admin}\n".encode()), strict=True):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return (*paths, admin)


def _noted(factory: OutputFactory, terminal: Terminal) -> OutputFactory:
    """``factory``, but an output that cannot start is a note on the terminal, not the end of the demo."""

    def make(cfg, kiosk):
        try:
            return factory(cfg, kiosk)
        except Exception as e:  # the demo still shows the rest; say why that output is not driven
            terminal.event("note", f"{factory.__name__.replace('_', ' ')} not started: {e}")
            return None

    return make


def _start_pos(folder: Path, terminal: Terminal, unmask: bool):
    """The POS on this machine, printing each line it receives."""
    from device.keyboard_layouts import layout
    from device.tools.fifo_pos import FifoPos, TypedLine

    def show(line: TypedLine) -> None:
        terminal.event("POS typed", f"{typed_text(line.text, unmask)} ({POS_TEXT})")

    pos = FifoPos(folder / "hidg0", layout(POS_LAYOUT), on_line=show)
    terminal.event("POS", f"a POS reads {pos.path.name} where /dev/hidg0 would be: the kiosk types each identification ({POS_TEXT})")
    return pos


def _render(folder: Path, seed: int, terminal: Terminal):
    from device.tools.synth.video import save_truth, write_presentation_video

    presentations = demo_presentations()
    kinds = _kinds_text(Counter(p.kind for p in presentations))
    terminal.event("video", f"rendering a counter video of {len(presentations)} presentations ({kinds}) ...")
    started = time.monotonic()
    path = folder / VIDEO_NAME
    truths = write_presentation_video(path, presentations, fps=VIDEO_FPS, size=VIDEO_SIZE, seed=seed)
    save_truth(path.with_suffix(TRUTH_SUFFIX), truths)
    terminal.event("video", f"{path.name}: {_video_text(path)}, rendered in {time.monotonic() - started:.1f} s")
    return path, truths


def _video_text(path: Path) -> str:
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS) or VIDEO_FPS
        w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    return f"{frames} frames {w}x{h} at {fps:g} fps ({frames / fps:.1f} s)"


def _load_video(path: Path, terminal: Terminal):
    from device.tools.synth.video import load_truth

    truth_path = path.with_suffix(TRUTH_SUFFIX)
    if truth_path.exists():
        truths = load_truth(truth_path)
        terminal.event("video", f"{path}: {_video_text(path)}, {len(truths)} presentations (truth from {truth_path.name})")
        return truths
    terminal.event("video", f"{path}: no {truth_path.name} beside it, so only delivery is checked")
    return None


class UsageError(Exception):
    """Options that cannot work together or name something missing (exit 2)."""


def _prepare_folder(keep: str | None, stack: contextlib.ExitStack) -> Path:
    if keep is None:
        folder = Path(tempfile.mkdtemp(prefix="kiosk-demo-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        return folder
    folder = Path(keep)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"--keep {keep}: must be a new or empty folder (a kept run is never overwritten)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_options(args) -> None:
    if args.camera and args.video:
        raise UsageError("give --camera or --video, not both")
    if args.video and not Path(args.video).is_file():
        raise UsageError(f"--video {args.video}: no such file")
    for contract in args.central_reject_contract:
        if not (len(contract) == 10 and contract.isdigit()):
            raise UsageError(f"--central-reject-contract: expected a 10-digit contract number, got {contract!r}")


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT/SIGTERM set ``stop`` (the daemon finishes its frame and stops) instead of raising."""
    fired: list[int] = []

    def on_signal(signum, _frame):
        fired.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield fired
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _sigint_blocked():
    """Start child processes with SIGINT blocked (the mask is inherited across exec).

    Ctrl-C in a terminal goes to the whole process group: the central would stop at once, before
    the demo has looked at what it holds. The demo stops it itself (SIGTERM) when it is done. A
    Ctrl-C pressed meanwhile is delivered to the demo when the block ends.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _median_text(frames: list[int]) -> str:
    if not frames:
        return "n/a"
    return f"median {statistics.median(frames):g} (min {min(frames)}, max {max(frames)}) at {VIDEO_FPS:g} fps"


def _summary(terminal: Terminal, v: Verdict, truths, live: bool, elapsed: float, interrupted: bool = False) -> None:
    terminal.line()
    terminal.line("Summary")
    if truths is not None:
        terminal.line(f"  shown        {sum(v.shown.values())} presentations: {_kinds_text(v.shown)}")
        terminal.line(f"  identified   {v.cards_identified} of {v.cards_shown} valid cards ({v.identified} identifications in all)")
    else:
        terminal.line(f"  identified   {v.identified}")
    if v.replaced_shown or v.refusals_delivered:
        terminal.line(
            f"  refused      {v.replaced_refused} of {v.replaced_shown} replaced cards shown ({v.refusals_delivered} refusals delivered)"
        )
    terminal.line(f"  rejected     {v.rejected} not a card")
    terminal.line(f"  delivered    {v.delivered} of {v.identified} identifications (the central holds each once)")
    if v.pos_typed is not None:
        terminal.line(f"  POS typed    {v.pos_typed} lines for {v.identified} identifications ({POS_TEXT})")
    if truths is not None:
        terminal.line(f"  frames from the card entering view to its identification: {_median_text(v.frames_to_read)}")
    terminal.line(f"  took         {elapsed:.1f} s")
    if interrupted:
        terminal.line(
            "INTERRUPTED before the end of the video: " + ("; ".join(v.problems) if v.problems else "what happened so far is above")
        )
    elif v.ok:
        what = (
            "every identification was delivered once"
            if live or truths is None
            else (
                "every valid card shown was identified once and delivered once, the replaced card refused once; nothing else was identified"
            )
        )
        if v.pos_typed is not None:
            what += "; the POS received one line per identification"
        terminal.line(f"PASS: {what}")
    else:
        terminal.line("FAIL:")
        for problem in v.problems:
            terminal.line(f"  - {problem}")


def main(args, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when the run was right (see the module docstring), 1 when not, 130 on Ctrl-C."""
    from central.process import start_subprocess
    from device import config as config_mod
    from device.assembly import OUTPUT_FACTORIES, build_kiosk
    from device.camera import CameraError
    from device.outputs.feedback import Feedback

    try:
        _check_options(args)
    except UsageError as e:
        print(f"kiosk demo: {e}", file=sys.stderr)
        return 2
    terminal = Terminal(out)
    # SIGTERM outside the daemon's run (rendering, starting) unwinds like Ctrl-C, so the central
    # process is stopped and the temporary folder removed rather than left behind.
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    root = logging.getLogger()
    previous_level = root.level
    if not args.verbose:
        root.setLevel(logging.WARNING)  # the demo prints the daemon's events itself, once
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(signal.signal, signal.SIGTERM, previous_term)
            stack.callback(root.setLevel, previous_level)
            folder = _prepare_folder(args.keep, stack)
            if args.keep:
                terminal.event("demo", f"keeping everything in {folder}")

            token = secrets.token_urlsafe(16)
            signing_key, public_key, admin_file, admin = _list_keys(folder)
            with _sigint_blocked():
                central = start_subprocess(folder / "central.db", token, reject_contracts=list(args.central_reject_contract),
                                           signing_key=str(signing_key), admin_token_file=str(admin_file))  # fmt: skip
                stack.callback(central.stop)
            refuses = (
                f", refusing contract(s) {', '.join(mask_contract(c, args.unmask) for c in args.central_reject_contract)}"
                if args.central_reject_contract
                else ""
            )
            terminal.event("central", f"reference central listening on {central.url} (pid {central.process.pid}{refuses})")
            for contract, issue in REISSUED.items():
                version = central.reissue(contract, issue, admin)["version"]
                terminal.event("central", f"re-issue recorded: contract {mask_contract(contract, args.unmask)} now at issue {issue} "
                               f"(issue {issue - 1} was lost); replaced-card list version {version}, signed")  # fmt: skip

            live = bool(args.camera)
            if live:
                source, truths = args.camera, None
            elif args.video:
                video = Path(args.video)
                truths = _load_video(video, terminal)
                source = f"file:{video.resolve()}"
            else:
                video, truths = _render(folder, args.seed, terminal)
                source = f"file:{video}"

            pos = None
            if args.pos == "keyboard":
                pos = _start_pos(folder, terminal, args.unmask)
                stack.callback(pos.close)
            hid_device = pos.path if pos is not None else None
            cfg = config_mod.load(
                _write_config(folder, source, args.pace, central.url, central.token_file, args.unmask, public_key, hid_device), environ={}
            )
            printer = EventPrinter(terminal, SIGNALS, truths, args.unmask)
            # The kiosk `kiosk run` builds (feedback on mock pins), with the printer as one more output.
            kiosk = build_kiosk(cfg, outputs=[printer], output_factories=[_noted(f, terminal) for f in OUTPUT_FACTORIES])
            stack.callback(kiosk.close)  # a no-op once it has run

            feedback = any(isinstance(output, Feedback) for output in kiosk.outputs.outputs)
            gpio = "mock GPIO, real feedback code" if feedback else "mock GPIO (feedback shown as text)"
            pace = "" if live else f" (pace {args.pace})"
            terminal.event("kiosk", f"daemon started: camera {cfg.camera.source}{pace}, {gpio}")
            if live:
                terminal.event("kiosk", "show it a card (print one with `kiosk testcard`); Ctrl-C to stop")

            stop = threading.Event()
            with _stop_on_signals(stop) as fired:
                run_code = kiosk.run(stop, DRAIN_TIMEOUT_S)
            interrupted = bool(fired) and not live
            if not interrupted and not live:
                terminal.event(
                    "kiosk",
                    f"video played ({kiosk.counters.frames} frames scanned); outbox drained"
                    if run_code == 0
                    else f"video played; outbox NOT drained within {DRAIN_TIMEOUT_S:g} s",
                )

            try:
                central_ids = Counter(item["id"] for item in central.identifications())
                central_refusal_ids = Counter(item["id"] for item in central.refusals())
            except OSError as e:
                central_ids, central_refusal_ids = Counter(), Counter()
                terminal.event("central", f"cannot list what the central holds: {e}")
            # The run has returned: every event has reached the printer (the outputs are closed).
            records = printer.final_records(pending_reason=kiosk.forwarder.last_error)
            verdict = judge(None if interrupted else truths, printer.identified_seen, printer.not_cards,
                            records, central_ids, run_code=run_code, faults=kiosk.faults.active(),
                            live=live, unmask=args.unmask, replaced=REISSUED, refused=printer.refused_seen,
                            central_refusal_ids=central_refusal_ids)  # fmt: skip
            if pos is not None:
                pos.close()  # the kiosk's outputs are closed: every line it typed is read
                judge_pos(verdict, [line.text for line in pos.lines], printer.identified_seen, unmask=args.unmask, error=pos.error)
            _summary(terminal, verdict, None if interrupted else truths, live, terminal.elapsed(), interrupted)
            if interrupted:
                return 130
            return 0 if verdict.ok else 1
    except UsageError as e:
        print(f"kiosk demo: {e}", file=sys.stderr)
        return 2
    except CameraError as e:  # a camera that cannot start at all (picamera2 missing, unreadable file)
        print(f"kiosk demo: camera: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while rendering or starting: everything above is cleaned up
        terminal.line("interrupted")
        return 130
