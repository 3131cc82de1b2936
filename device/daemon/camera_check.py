"""A camera that checks itself: the ``camera-degraded`` fault, and which cause it is.

A camera slowly going out of focus, a window gathering dust, a failing light, a camera knocked
aside: each makes the kiosk read fewer cards long before it reads none, and the clients notice
first. So the daemon watches figures that tell these apart, and raises
:data:`~device.fault_names.CAMERA_DEGRADED` naming the :class:`Cause` (the amber LED, ``kiosk
status``), cleared once the figures are back within bounds:

* with a **reference target** (``camera.target_region`` and ``camera.target_text``: a small code
  printed and fixed at the edge of the view, docs/INSTALL.md), at start and every
  ``camera.target_interval_s`` it is read and measured (:class:`~device.vision.target.TargetReader`)
  and judged against its figures at its first good read (:func:`judge_target`);
* **without one**, the cards themselves: the sharpest read of each presentation, as the median
  of the last ``camera.card_check_reads`` against the median of the first ones
  (:class:`CardFigureWindow`). Cards are held at any distance, so only a drift of the median
  counts, with a generous bound, and never before there are that many.

The first figures are the **baseline**, kept beside the outbox (:class:`BaselineFile`) across
restarts: a daemon restarted on a camera already degraded must not take that as normal. It is
measured anew when what the picture depends on changes in the configuration (the camera, its
size, focus and exposure, the target), or when a technician removes the file after re-aiming the
camera on purpose (docs/TECHNICIANS.md)::

    check = CameraCheck.from_config(cfg, faults)   # an output: it gets every scanned frame
    kiosk.add_output(check)                        # its own thread, off the scan loop

    >>> layout = ((40.0, 200.0), (200.0, 40.0))
    >>> base = TargetBaseline(light=230.0, contrast=0.85, edge_px=2.0, module_px=3.0, layout=layout)
    >>> now = TargetBaseline(light=228.0, contrast=0.84, edge_px=4.1, module_px=3.1, layout=layout)
    >>> print(judge_target(now.as_figures(read=True), base, tolerance=0.3).message)
    focus lost: the reference target's edges are 4.1 px wide, 2.0 px wide at its baseline; refocus (docs/TECHNICIANS.md)

Known limit: a target far out of focus all at once loses its contrast as well as its edges, and
may be named "dirty window" instead; either way the window is cleaned and the focus checked.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device.config import TARGET_RECHECK_S, Config
from device.events import FrameScanned
from device.fault_names import CAMERA_DEGRADED
from device.outputs.base import Output
from device.vision import CodeFigures
from device.vision.figures import Levels, likeness

if TYPE_CHECKING:
    from device.daemon.faults import FaultRegistry
    from device.vision.target import TargetFigures, TargetReader

log = logging.getLogger(__name__)

#: The baseline's file, beside the outbox (``outbox.path``'s folder: the kiosk's state, kept across restarts).
BASELINE_FILE = "camera-baseline.json"
#: The ``[camera]`` keys the picture depends on: a baseline recorded under other values is measured anew.
BASELINE_KEYS = (
    "source", "width", "height", "focus", "focus_dioptres", "v4l2_focus", "exposure", "max_exposure_us", "max_gain",
    "v4l2_gain", "target_region", "target_text",
)  # fmt: skip
#: Below this likeness the target's place no longer looks as it did: the target (or the camera) moved.
MIN_LIKENESS = 0.7
#: Edges must widen by at least this many pixels as well as by the tolerance (a sharp edge's width
#: wobbles by a fraction of a pixel with where it falls on the pixel grid).
MIN_EDGE_GROWTH_PX = 0.5


class Cause(enum.Enum):
    """Why the camera sees worse: the start of the fault's message."""

    FOCUS_LOST = "focus lost"  # the target no longer reads, or edges softened
    DIRTY_WINDOW = "dirty window"  # contrast fell with the brightness kept
    TOO_DARK = "too dark"  # the brightness fell
    MOVED = "moved"  # pixels per module changed, or the target is no longer where it was


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: no ``cause`` when the camera sees as well as at its baseline.

    >>> Verdict(Cause.TOO_DARK, "the reference target's paper is at grey 60").message
    "too dark: the reference target's paper is at grey 60"
    """

    cause: Cause | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.cause is None

    @property
    def message(self) -> str:
        """The fault's message: the cause, then what was measured and what to do."""
        return f"{self.cause.value}: {self.detail}" if self.cause else self.detail


WELL = Verdict(None, "the camera sees as well as at its baseline")


@dataclass(frozen=True)
class TargetBaseline:
    """The reference target's figures at its first good read: the paper's grey ``light``, the
    ``contrast``, edge width and pixels per module, and the ``layout`` of its place (a thumbnail)."""

    light: float
    contrast: float
    edge_px: float
    module_px: float
    layout: tuple[tuple[float, ...], ...]

    @classmethod
    def of(cls, figures: TargetFigures) -> TargetBaseline | None:
        """The baseline a look gives, or None when it is no good read (nothing to compare with)."""
        if not figures.read or figures.edge_px is None or figures.module_px is None:
            return None
        layout = tuple(tuple(round(float(v), 2) for v in row) for row in figures.layout)
        return cls(figures.levels.light, figures.levels.contrast, figures.edge_px, figures.module_px, layout)

    def as_figures(self, *, read: bool) -> TargetFigures:
        """These figures as a look would give them (for examples and tests of :func:`judge_target`)."""
        from device.vision.target import TargetFigures

        dark = self.light * (1.0 - self.contrast)
        return TargetFigures(read, Levels(dark, self.light), self.edge_px, self.module_px if read else None, np.array(self.layout))


@dataclass(frozen=True)
class CardBaseline:
    """The cards' median pixels per module and edge width over the first presentations."""

    module_px: float
    edge_px: float


def judge_target(now: TargetFigures, base: TargetBaseline | None, tolerance: float) -> Verdict:
    """What a look at the target says, against its baseline (None: none yet), each figure
    allowed to drift by ``tolerance`` (a share).

    In this order, each cause masking the later ones: the place no longer looks as it did
    (moved, removed, covered); its paper darker (too dark: a code in the dark also loses its
    edges); edges wider (focus lost); contrast lower with the brightness kept (dirty window);
    the code no longer reads; its pixels per module changed (moved).
    """
    if base is None:
        if now.read:
            return WELL
        return Verdict(
            Cause.FOCUS_LOST,
            "the reference target does not read at camera.target_region (no good read since it was configured): "
            "focus the camera and check the region with `kiosk diag camera` (docs/TECHNICIANS.md)",
        )
    was = np.array(base.layout, np.float32)
    alike = likeness(now.layout, was)
    # A place that was flat (a code filling it) has no layout to compare: the other figures say it.
    if likeness(was, was) is not None and (alike is None or alike < MIN_LIKENESS):
        shown = "it is flat now" if alike is None else f"likeness {alike:.2f}, at least {MIN_LIKENESS} expected"
        return Verdict(
            Cause.MOVED,
            f"the reference target's place no longer looks as it did ({shown}): "
            "the camera or the target moved, or something covers it (docs/TECHNICIANS.md)",
        )
    edge = now.edge_px
    if now.levels.light < base.light * (1.0 - tolerance):
        return _drifted(Cause.TOO_DARK, "paper is at grey", now.levels.light, base.light, "{:.0f}", "check the light")
    if edge is not None and edge > base.edge_px * (1.0 + tolerance) and edge - base.edge_px >= MIN_EDGE_GROWTH_PX:
        return _drifted(Cause.FOCUS_LOST, "edges are", edge, base.edge_px, "{:.1f} px wide", "refocus")
    if now.levels.contrast < base.contrast * (1.0 - tolerance):
        return _drifted(Cause.DIRTY_WINDOW, "contrast is", now.levels.contrast, base.contrast, "{:.2f}", "the light kept: clean the window")
    if not now.read:
        return Verdict(Cause.FOCUS_LOST, "the reference target no longer reads; refocus (docs/TECHNICIANS.md)")
    if now.module_px is not None and abs(now.module_px / base.module_px - 1.0) > tolerance:
        return _drifted(Cause.MOVED, "code is", now.module_px, base.module_px, "{:.2f} px per module", "the camera or the target moved")
    return WELL


def _drifted(cause: Cause, what: str, now: float, base: float, shown: str, advice: str) -> Verdict:
    """A figure of the target that drifted: what it is now, what it was, and what to do."""
    return Verdict(
        cause, f"the reference target's {what} {shown.format(now)}, {shown.format(base)} at its baseline; {advice} (docs/TECHNICIANS.md)"
    )


class CardFigureWindow:
    """The cards' figures, one per presentation: the median of the last ``reads`` against the
    median of the first ``reads`` (the baseline, or ``baseline`` when one was kept).

    >>> window = CardFigureWindow(reads=5, tolerance=0.5)
    >>> [window.add(CodeFigures(2.0, 1.6)) for _ in range(5)][-1]   # the fifth sets the baseline
    Verdict(cause=None, detail='the camera sees as well as at its baseline')
    >>> window.add(CodeFigures(2.0, 9.0)).ok                        # one odd read: the median holds
    True
    >>> [window.add(CodeFigures(2.0, 3.0)) for _ in range(3)][-1].message
    "focus lost: the cards' median edge width is 3.0 px over the last 5 presentations, 1.6 at the baseline; refocus (docs/TECHNICIANS.md)"
    """

    def __init__(self, reads: int, tolerance: float, baseline: CardBaseline | None = None):
        self.reads = reads
        self.tolerance = tolerance
        self.baseline = baseline
        self.recent: deque[CodeFigures] = deque(maxlen=reads)

    def add(self, figures: CodeFigures) -> Verdict | None:
        """One more presentation's figures: the verdict, or None while there are too few to judge."""
        self.recent.append(figures)
        if len(self.recent) < self.reads:
            return None
        module_px = statistics.median(f.module_px for f in self.recent)
        edge_px = statistics.median(f.edge_px for f in self.recent)
        if self.baseline is None:
            self.baseline = CardBaseline(module_px, edge_px)
            log.info("camera check: the cards' baseline is %.2f px per module, edges %.2f px wide", module_px, edge_px)
            return WELL
        base, tolerance, n = self.baseline, self.tolerance, len(self.recent)
        if abs(module_px / base.module_px - 1.0) > tolerance:
            return Verdict(
                Cause.MOVED,
                f"the cards' median is {module_px:.2f} px per module over the last {n} presentations, {base.module_px:.2f} "
                "at the baseline: the camera moved, or clients hold their cards elsewhere (docs/TECHNICIANS.md)",
            )
        if edge_px > base.edge_px * (1.0 + tolerance) and edge_px - base.edge_px >= MIN_EDGE_GROWTH_PX:
            return Verdict(
                Cause.FOCUS_LOST,
                f"the cards' median edge width is {edge_px:.1f} px over the last {n} presentations, {base.edge_px:.1f} "
                "at the baseline; refocus (docs/TECHNICIANS.md)",
            )
        return WELL


class Presentations:
    """The sharpest figures of each card presentation: a card seen again within ``window_s`` of
    when it was last seen is the same presentation (``scan.repeat_window_s``, as the scan loop's)."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._open: dict[str, tuple[float, CodeFigures]] = {}  # card text -> (last seen, sharpest)
        self._ended: list[CodeFigures] = []  # presentations over, not yet taken

    def seen(self, text: str, figures: CodeFigures, now: float) -> None:
        """Card ``text`` read with ``figures`` at ``now``."""
        last = self._open.get(text)
        if last is not None and now - last[0] <= self.window_s and last[1].edge_px <= figures.edge_px:
            figures = last[1]
        if last is not None and now - last[0] > self.window_s:
            self._open.pop(text)  # a new presentation of the same card: the old one ends first
            self._ended.append(last[1])
        self._open[text] = (now, figures)

    def ended(self, now: float) -> list[CodeFigures]:
        """The sharpest figures of each presentation over by ``now``, oldest first, each once."""
        for text, (last, figures) in list(self._open.items()):
            if now - last > self.window_s:
                del self._open[text]
                self._ended.append(figures)
        ended, self._ended = self._ended, []
        return ended


class BaselineFile:
    """The baselines on disk (JSON, replaced atomically), for the configuration ``key`` they were measured under.

    :param path: the file (:data:`BASELINE_FILE` beside the outbox).
    :param key: what the picture depends on (:data:`BASELINE_KEYS`' values): a file recorded
        under another key is ignored, and overwritten at the next baseline.
    """

    def __init__(self, path: Path, key: Mapping[str, Any]):
        self.path = path
        self.key = dict(key)
        self.target: TargetBaseline | None = None
        self.cards: CardBaseline | None = None

    def load(self) -> BaselineFile:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return self
        except (OSError, ValueError) as e:
            log.warning("camera check: cannot read %s (a new baseline is measured): %s", self.path, e)
            return self
        if not isinstance(data, dict) or data.get("key") != self.key:
            log.info("camera check: %s was recorded for another camera setup: a new baseline is measured", self.path)
            return self
        try:
            if data.get("target"):
                target = dict(data["target"])
                target["layout"] = tuple(tuple(float(v) for v in row) for row in target["layout"])
                self.target = TargetBaseline(**target)
            if data.get("cards"):
                self.cards = CardBaseline(**data["cards"])
        except (TypeError, KeyError, ValueError) as e:
            log.warning("camera check: %s is not a baseline (a new one is measured): %s", self.path, e)
            self.target = self.cards = None
        return self

    def save(self) -> None:
        """Write both baselines; a file that cannot be written is logged, the baseline kept in memory."""
        data = {
            "key": self.key,
            "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            "target": asdict(self.target) if self.target else None,
            "cards": asdict(self.cards) if self.cards else None,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1) + "\n")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("camera check: cannot keep the baseline in %s (kept until the daemon stops): %s", self.path, e)


class CameraCheck(Output):
    """The camera check, fed every scanned frame in its own output thread (never the scan loop's).

    :param faults: where :data:`~device.fault_names.CAMERA_DEGRADED` is raised and cleared.
    :param baselines: the baselines kept across restarts (:class:`BaselineFile`).
    :param target: the reference target's reader, or None to check the cards' figures instead.
    :param interval_s: ``camera.target_interval_s``; ``confirm``: ``camera.target_confirm``;
        ``tolerance``: ``camera.check_tolerance``.
    :param card_reads: ``camera.card_check_reads`` (0: no check from the cards);
        ``card_tolerance``: ``camera.card_check_tolerance``; ``repeat_window_s``: ``scan.repeat_window_s``.
    :param clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        faults: FaultRegistry,
        baselines: BaselineFile,
        *,
        target: TargetReader | None,
        interval_s: float,
        confirm: int,
        tolerance: float,
        card_reads: int,
        card_tolerance: float,
        repeat_window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.faults = faults
        self.baselines = baselines
        self.target = target
        self.interval_s = interval_s
        self.confirm = confirm
        self.tolerance = tolerance
        self.clock = clock
        self.cards = CardFigureWindow(card_reads, card_tolerance, baselines.cards) if card_reads and target is None else None
        self.presentations = Presentations(repeat_window_s)
        self._due = 0.0  # the first frame is checked: the check at start
        self._failed = 0  # checks failed in a row
        #: The last look at the target and its verdict (None before the first), and how many looks so far.
        self.last: tuple[TargetFigures, Verdict] | None = None
        self.looks = 0

    @classmethod
    def from_config(cls, cfg: Config, faults: FaultRegistry) -> CameraCheck | None:
        """The check ``[camera]`` asks for; None when there is neither a target nor a check of the cards."""
        from device.camera_spec import target_region

        camera = cfg.camera
        region = target_region(camera.target_region)
        if region is None and not camera.card_check_reads:
            return None
        target = None
        if region is not None:
            from device.vision.target import TargetReader

            target = TargetReader(camera.target_text, region)
        key = {name: getattr(camera, name) for name in BASELINE_KEYS}
        baselines = BaselineFile(Path(cfg.outbox.path).parent / BASELINE_FILE, key).load()
        return cls(
            faults,
            baselines,
            target=target,
            interval_s=camera.target_interval_s,
            confirm=camera.target_confirm,
            tolerance=camera.check_tolerance,
            card_reads=camera.card_check_reads,
            card_tolerance=camera.card_check_tolerance,
            repeat_window_s=cfg.scan.repeat_window_s,
        )

    def on_frame(self, event: FrameScanned) -> None:
        if self.target is not None:
            self._look_at_target(event)
        elif self.cards is not None:
            self._follow_cards(event)

    # -- the reference target ----------------------------------------------------------------

    def _look_at_target(self, event: FrameScanned) -> None:
        now = self.clock()
        frame = event.result.frame
        if now < self._due or frame is None or self.target is None:
            return
        try:
            figures = self.target.measure(frame.image)
        except ValueError:  # an odd frame (the scan loop skips it too): the next one
            return
        if self.baselines.target is None and (baseline := TargetBaseline.of(figures)) is not None:
            self.baselines.target = baseline
            self.baselines.save()
            log.info(
                "camera check: the reference target's baseline is %.2f px per module, edges %.2f px, paper at grey %.0f, contrast %.2f",
                baseline.module_px,
                baseline.edge_px,
                baseline.light,
                baseline.contrast,
            )
        verdict = judge_target(figures, self.baselines.target, self.tolerance)
        self.last = (figures, verdict)
        self.looks += 1
        if verdict.ok:
            self._failed = 0
            self._due = now + self.interval_s
            self.faults.clear(CAMERA_DEGRADED, "the reference target reads within bounds again")
            return
        self._failed += 1
        self._due = now + min(self.interval_s, TARGET_RECHECK_S)
        if self._failed >= self.confirm:
            self.faults.raise_(CAMERA_DEGRADED, verdict.message, counted=False)

    # -- the cards ---------------------------------------------------------------------------

    def _follow_cards(self, event: FrameScanned) -> None:
        now = self.clock()
        for reading in event.result.readings:
            if reading.card is not None and reading.symbol.figures is not None:
                self.presentations.seen(reading.symbol.text, reading.symbol.figures, now)
        for figures in self.presentations.ended(now):
            self._judge_cards(figures)

    def _judge_cards(self, figures: CodeFigures) -> None:
        assert self.cards is not None
        had_baseline = self.cards.baseline is not None
        verdict = self.cards.add(figures)
        if verdict is None:
            return
        if not had_baseline and self.cards.baseline is not None:
            self.baselines.cards = self.cards.baseline
            self.baselines.save()
        if verdict.ok:
            self.faults.clear(CAMERA_DEGRADED, "the cards' figures are within bounds again")
        else:
            self.faults.raise_(CAMERA_DEGRADED, verdict.message, counted=False)
