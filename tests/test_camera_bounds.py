"""Bounded memory: an image larger than MAX_IMAGE_PIXELS is refused before it is decoded.

A 20000x20000 PNG of one colour is a few hundred KB on disk and 1.2 GB decoded (issue 11: 870 MB
in `kiosk scan` before). Each test makes its bomb itself, without ever holding the pixels.
"""

import os
import struct
import subprocess
import zlib

import cv2
import numpy as np
import pytest
from support.kiosk import kiosk_cmd

from device.camera import CameraError
from device.camera.file import MAX_IMAGE_PIXELS, FileSource, iter_frames, load_image

#: Peak memory allowed to `kiosk scan` of a bomb: far below the 870 MB it took, well above the
#: ~100-250 MB the command needs to import OpenCV and the decoders.
SCAN_MEMORY_LIMIT_MB = 400


def write_flat_png(path, width: int, height: int):
    """A valid grey PNG of ``width`` x ``height`` black pixels, compressed row by row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + width)  # filter byte, then the pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """20000x20000 pixels (400 MP), the issue's case."""
    return write_flat_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 20000, 20000)


def test_the_generated_png_is_a_real_image(tmp_path):
    small = write_flat_png(tmp_path / "small.png", 300, 200)
    assert load_image(small).shape == (200, 300)


def test_a_bomb_is_refused_by_its_header(bomb):
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(CameraError, match=r"bomb.png: image of \d+ pixels \(400 megapixels\) is larger than the 40 megapixels"):
        load_image(bomb)
    with pytest.raises(CameraError, match="40 megapixels"):
        FileSource(bomb, pace="fast")


def test_just_above_the_limit_is_refused_with_its_size(tmp_path):
    # 8000x5001: above 40 MP, below Pillow's own bomb limit, so the exact size is said.
    big = write_flat_png(tmp_path / "big.png", 8000, 5001)
    with pytest.raises(CameraError, match=r"image of 8000x5001 pixels \(40 megapixels\) is larger than the 40 megapixels"):
        load_image(big)


def test_at_the_limit_is_decoded(tmp_path):
    side = int(MAX_IMAGE_PIXELS**0.5)
    assert load_image(write_flat_png(tmp_path / "edge.png", side, side)).shape == (side, side)


def test_a_bomb_named_as_a_video_is_refused_too(tmp_path):
    # OpenCV's VideoCapture opens an image as a one-frame video and would decode it whole.
    disguised = write_flat_png(tmp_path / "clip.avi", 20000, 20000)
    with pytest.raises(CameraError, match="megapixels"):
        FileSource(disguised, pace="fast")


def test_a_folder_skips_the_bomb_and_plays_the_rest(tmp_path, caplog):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "001.png"), np.full((60, 80, 3), 90, np.uint8))
    write_flat_png(folder / "002.png", 20000, 20000)
    cv2.imwrite(str(folder / "003.png"), np.full((60, 80, 3), 200, np.uint8))
    frames = list(iter_frames(folder))
    assert [f.index for f in frames] == [0, 2]
    assert "skipping image 1" in caplog.text and "megapixels" in caplog.text


def test_kiosk_scan_refuses_a_bomb_in_bounded_memory(tmp_path, bomb):
    """The subprocess's own peak memory (wait4), not a timing: it never decodes the pixels."""
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((60, 80, 3), 120, np.uint8))
    with open(tmp_path / "stderr", "w+b") as err:
        proc = subprocess.Popen(kiosk_cmd("scan", str(bomb), str(good)), stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()  # to the end: the child has exited; it is reaped by wait4, not by Popen
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        assert proc.returncode == 1, err.read().decode()
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    lines = out.decode().splitlines()
    assert any(line.startswith(f"{bomb}: error:") and "40 megapixels" in line for line in lines), lines
    assert any(line.startswith(f"{good}: nothing decoded") for line in lines), lines  # the rest is still scanned
    assert peak_mb < SCAN_MEMORY_LIMIT_MB, f"kiosk scan of a bomb peaked at {peak_mb:.0f} MB"
