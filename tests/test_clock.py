"""Is the wall clock synchronised, and UTC times as the outbox stores them."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from device.clock import (
    STA_UNSYNC,
    TIME_ERROR,
    FakeClock,
    SystemClock,
    TimexReading,
    ntp_synchronized,
    parse_utc,
    read_adjtimex,
    utc_iso,
)


def reading(maxerror_us, status=0, state=0):
    return lambda: TimexReading(state=state, status=status, maxerror_us=maxerror_us)


def failing():
    raise OSError("adjtimex is not available on this system")


def test_small_max_error_is_synchronised(tmp_path):
    assert ntp_synchronized(adjtimex=reading(250_000), flag_path=tmp_path / "absent") is True


def test_the_kernel_limit_of_16_seconds_means_not_synchronised(tmp_path):
    # A freshly booted Pi without NTP: the kernel reports maxerror 16 s and TIME_ERROR.
    flag = tmp_path / "synchronized"
    flag.touch()  # adjtimex answered: the flag file is not consulted
    assert ntp_synchronized(adjtimex=reading(16_000_000, STA_UNSYNC, TIME_ERROR), flag_path=flag) is False


def test_sta_unsync_alone_does_not_count_as_unsynchronised(tmp_path):
    # As systemd's NTPSynchronized: chrony may leave STA_UNSYNC set to keep the RTC untouched.
    assert ntp_synchronized(adjtimex=reading(40_000, STA_UNSYNC), flag_path=None) is True


def test_without_adjtimex_the_timesyncd_flag_decides(tmp_path):
    flag = tmp_path / "synchronized"
    assert ntp_synchronized(adjtimex=failing, flag_path=flag) is False
    flag.touch()
    assert ntp_synchronized(adjtimex=failing, flag_path=flag) is True
    assert ntp_synchronized(adjtimex=None, flag_path=flag) is True


def test_nothing_to_ask_means_not_synchronised():
    assert ntp_synchronized(adjtimex=failing, flag_path=None) is False


def test_the_real_system_call_reads_the_kernel_structure():
    try:
        r = read_adjtimex()
    except OSError:
        pytest.skip("adjtimex is not available here")
    # Whatever this host's state, a well-read struct has a non-negative error and a valid state.
    assert r.maxerror_us >= 0 and 0 <= r.state <= TIME_ERROR


def test_system_clock_asks_once_per_cache_period():
    calls = []
    clock = SystemClock(synced_cache_s=3600, check=lambda: calls.append(1) or True)
    assert clock.synced() and clock.synced() and clock.synced()
    assert len(calls) == 1
    assert clock.now().tzinfo is not None


def test_utc_iso_is_fixed_width_utc_that_sorts_as_text():
    riga = timezone(timedelta(hours=3))
    a = utc_iso(datetime(2024, 5, 2, 12, 15, 0, 123456, tzinfo=riga))
    b = utc_iso(datetime(2024, 5, 2, 9, 15, 1, tzinfo=UTC))
    assert a == "2024-05-02T09:15:00.123Z"
    assert b == "2024-05-02T09:15:01.000Z"
    assert len(a) == len(b) and a < b
    assert parse_utc(a) == datetime(2024, 5, 2, 9, 15, 0, 123000, tzinfo=UTC)


def test_fake_clock_jump_moves_only_the_wall_clock():
    clock = FakeClock("2030-01-01T00:00:00Z")
    mono = clock.monotonic()
    clock.jump(-86400)
    assert utc_iso(clock.now()) == "2029-12-31T00:00:00.000Z" and clock.monotonic() == mono
    clock.advance(10)
    assert clock.monotonic() == mono + 10
