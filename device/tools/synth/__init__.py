"""Synthetic media: client cards, counter scenes and presentation videos, made on the fly.

Tests, benchmarks, ``kiosk demo`` and ``kiosk testcard`` use these instead of binary files in git.

* :mod:`device.tools.synth.card`  -- a client card at true size (PNG at 300 dpi, or PDF), product labels
* :mod:`device.tools.synth.scene` -- a card as a counter camera sees it (:class:`~device.tools.synth.scene.Conditions`)
* :mod:`device.tools.synth.video` -- several presentations one after another, with the truth per presentation

>>> from device.tools.synth.card import render_card
>>> from device.tools.synth.scene import Conditions, render_scene
>>> frame = render_scene(render_card("0012345678", 1), Conditions(rotation_deg=40))
>>> frame.shape
(720, 1280, 3)
"""
