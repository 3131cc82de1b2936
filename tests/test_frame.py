"""device.camera.frame: a frame that carries the camera's JPEG buffer and decodes it only as far
as someone needs (the gate a 1/8-scale grey thumbnail, the scanner the full image)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from support.cards import card_photo, empty_counter

from device.camera import CorruptFrame, Frame
from device.camera.file import FileSource, iter_frames
from device.config import Config
from device.pipeline import Pipeline

CONTRACT = "0012345678"


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    """Sensor noise: what changes between two frames of a still scene."""
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def test_an_encoded_frame_gives_what_imdecode_gives_at_1_8_scale_and_in_full():
    data = jpeg(card_photo(CONTRACT, size=(1280, 720)))
    frame = Frame(encoded=data, index=3, monotonic=1.5)
    buffer = np.frombuffer(data, np.uint8)
    thumb = frame.thumbnail_source(80)
    assert thumb.shape == (90, 160)
    assert np.array_equal(thumb, cv2.imdecode(buffer, cv2.IMREAD_REDUCED_GRAYSCALE_8))
    assert not frame.decoded and frame.full_decodes == 0
    assert np.array_equal(frame.image, cv2.imdecode(buffer, cv2.IMREAD_COLOR))
    assert frame.image is frame.image and frame.full_decodes == 1  # decoded once, then kept
    assert frame.decoded and frame.thumbnail_source(80) is frame.image


def test_the_thumbnail_is_the_smallest_reduction_wide_enough():
    data = np.frombuffer(jpeg(card_photo(CONTRACT, size=(320, 240))), np.uint8)
    assert np.array_equal(Frame(encoded=data).thumbnail_source(80), cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_4))
    assert np.array_equal(Frame(encoded=data).thumbnail_source(40), cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8))
    assert Frame(encoded=data).thumbnail_source(400).shape == (240, 320)  # narrower than asked: all of it


def test_a_decoded_frame_is_its_own_thumbnail_source():
    image = empty_counter()
    frame = Frame(image)
    assert frame.decoded and frame.image is image and frame.thumbnail_source(80) is image
    frame.check()  # nothing to check


@pytest.mark.parametrize(
    "data",
    [b"\xff\xd8\xff\xe0" + bytes(200), b"not a jpeg at all", b""],
    ids=["garbage-after-soi", "not-jpeg", "empty"],
)
def test_a_buffer_that_does_not_decode_is_a_corrupt_frame(data):
    frame = Frame(encoded=data, index=9)
    with pytest.raises(CorruptFrame, match="frame 9"):
        frame.check()
    with pytest.raises(CorruptFrame):
        _ = frame.image  # reading the picture decodes it, and that raises
    assert issubclass(CorruptFrame, ValueError)  # what the scan loop skips as an odd frame


def broken_in_the_middle(data: bytes) -> bytes:
    """A JPEG with both ends intact and garbage where the picture's data was."""
    return data[:200] + b"\xff\x01" * 100 + data[-2:]


def test_framing_refuses_a_buffer_cut_short_without_decoding_a_whole_one():
    data = jpeg(card_photo(CONTRACT, size=(320, 240)))
    for cut_short in (data[:40], data[: len(data) // 2], data[:-2]):
        with pytest.raises(CorruptFrame):
            Frame(encoded=cut_short).check_framing()
    Frame(encoded=data).check_framing()
    Frame(encoded=np.frombuffer(data + bytes(16), np.uint8).reshape(1, -1)).check_framing()  # padded, as a camera may
    Frame(encoded=data + b"trailing junk").check_framing()  # ends that do not say: decoded, and it decodes
    # Framing looks at the ends only: a buffer broken in the middle passes it, and fails when looked at.
    broken = Frame(encoded=broken_in_the_middle(data))
    broken.check_framing()
    with pytest.raises(CorruptFrame):
        broken.check()


def test_frames_a_quiet_view_skips_unlooked_are_not_decoded_at_all():
    """A buffer broken in the middle on a frame the quiet gate does not look at raises nothing
    (nothing decodes it); the same buffer on a frame it looks at is an odd frame."""
    pipeline = Pipeline.from_config(Config())  # scan.quiet_look_every = 2
    rng = np.random.default_rng(6)
    empty = empty_counter()
    broken = broken_in_the_middle(jpeg(noisy(empty, rng)))
    reasons = []
    for i in range(12):  # 30 fps, nothing changing: looked at are frames 0, 2, 4, ...
        data = broken if i in (5, 7) else jpeg(noisy(empty, rng))
        frame = Frame(encoded=data, index=i, monotonic=i / 30)
        reasons.append(pipeline.scanner.gate.check(frame, frame.monotonic).reason)
        assert frame.full_decodes == 0
    assert reasons[5] == reasons[7] == "quiet"
    with pytest.raises(CorruptFrame):
        pipeline.frame(Frame(encoded=broken, index=12, monotonic=12 / 30), 12 / 30)


def test_a_corrupt_frame_is_refused_by_the_pipeline_as_an_odd_frame():
    with pytest.raises(ValueError, match="does not decode"):
        Pipeline.from_config(Config()).frame(Frame(encoded=b"\xff\xd8\xff\xe0" + bytes(200)), 0.0)


def test_frames_the_gate_skips_are_never_decoded_in_full():
    """An empty counter for a while, then a card: only the frames the gate lets through (the
    first, the full looks, the card's) are decoded; the card is read from its encoded frame."""
    pipeline = Pipeline.from_config(Config())
    rng = np.random.default_rng(4)
    empty, card = empty_counter(), card_photo(CONTRACT)
    frames, results = [], []
    for i in range(75):  # 30 fps: 2 s of empty counter, then the card for half a second
        image = noisy(empty if i < 60 else card, rng)
        frames.append(Frame(encoded=jpeg(image), index=i, monotonic=i / 30))
        results.append(pipeline.frame(frames[-1], frames[-1].monotonic))
    let_through = [i for i, r in enumerate(results) if r.decoded]
    skipped = [i for i, r in enumerate(results) if not r.decoded]
    assert len(skipped) >= 50, let_through  # an empty counter is mostly skipped
    assert all(frames[i].full_decodes == 0 for i in skipped)
    assert all(frames[i].full_decodes == 1 for i in let_through)
    assert 60 in let_through  # the card entering is a change
    read = [r.card.contract for r in results[60:] for r in r.readings if r.card]
    assert read and set(read) == {CONTRACT}


def test_the_gate_decides_alike_on_thumbnails_and_on_decoded_frames():
    """Same stream twice, once as decoded images and once as JPEG buffers: the same frames go through."""
    rng = np.random.default_rng(5)
    empty, card = empty_counter(), card_photo(CONTRACT)
    images = [noisy(empty if i < 40 or i >= 55 else card, rng) for i in range(90)]
    decoded, encoded = Pipeline.from_config(Config()), Pipeline.from_config(Config())
    a = [decoded.frame(image, i / 30).decoded for i, image in enumerate(images)]
    b = [encoded.frame(Frame(encoded=jpeg(image), monotonic=i / 30), i / 30).decoded for i, image in enumerate(images)]
    assert a == b


def test_an_mjpeg_video_plays_as_encoded_frames(tmp_path):
    path = tmp_path / "counter.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    shades = [40, 120, 200]
    for shade in shades:
        writer.write(np.full((240, 320, 3), shade, np.uint8))
    writer.release()
    with FileSource(path, pace="fast") as source:
        frames = [source.read(), source.read(), source.read()]
        assert source.read() is None
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(not f.decoded and f.encoded is not None for f in frames)
    for frame, shade in zip(frames, shades, strict=True):
        assert np.array_equal(frame.image, cv2.imdecode(np.frombuffer(frame.encoded, np.uint8), cv2.IMREAD_COLOR))
        assert abs(float(frame.image.mean()) - shade) < 3


def test_jpeg_files_play_encoded_and_other_images_decoded(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((48, 64), 90, np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((48, 64, 3), 30, np.uint8))
    a, b = iter_frames(tmp_path)
    assert not a.decoded and a.image.shape == (48, 64) and a.still  # a grey JPEG stays grey
    assert b.decoded and b.image.shape == (48, 64, 3)
