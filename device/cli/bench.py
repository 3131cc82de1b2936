"""`kiosk bench ...`: the benchmarks (device.tools.bench), loaded only when asked for."""

from __future__ import annotations

from device.cli import add_group, add_module_command

HELP = {"bench": "measure read rates and speed"}


def register(sub) -> None:
    # The central's load test lives with the central (it measures any central over HTTP); its module
    # imports nothing heavy until the command runs.
    from central.loadtest import bench as central_bench
    from device.tools.bench import command, decode, flood, idle, loop, motion, outbox, pos, resolution, revocations, scenes, slow_preview

    bsub = add_group(
        sub,
        "bench",
        HELP["bench"],
        "Benchmarks: read rates and costs, side by side in one run.",
        example="kiosk bench decode",
        dest="bench_command",
    )
    for name, module, help_text in (
        ("decode", decode, "read rate, misreads and ms per image: raw zxing-cpp, raw pyzbar and the pipeline, per rotation"),
        ("scenes", scenes, "read rate on synthetic counter scenes: the pipeline against the raw decoders"),
        ("resolution", resolution, "read rate against module size (0.8-3 px): raw decoders, the pipeline before and with the card decoder"),
        (
            "motion",
            motion,
            "read rate against motion smear along the code (0-5 modules), and the fastest card speed read at the configured exposure",
        ),
        ("loop", loop, "frames per second, CPU per frame and gate skips of the scan loop on a video"),
        ("outbox", outbox, "commit latency with synchronous=FULL and the drain rate of a backlog into the central"),
        ("idle", idle, "the idle daemon (camera on, nobody at the counter): CPU share, and memory over 50,000 frames"),
        (
            "revocations",
            revocations,
            "the replaced-card list: a complete sync of a million contracts, a delta, the check per card, frame times during a sync",
        ),
        ("command", command, "CPU time of a technician's command (e.g. status) for one or more installs, side by side"),
        ("pos", pos, "the POS hand-off: scan-loop time per frame with pos.output none and keyboard, and commit-to-typed latency"),
        ("requests", flood, "hostile requests: FIFOs, directories, symlinks, huge files and 2,000 requests against the running daemon"),
        ("preview", slow_preview, "1,000 slow connections to the live view: the daemon's descriptors, frame rate, watchdog and faults"),
        (
            "central",
            central_bench,
            "the central at fleet scale, SQLite and PostgreSQL side by side: ingest rate, p99 at a target rate, a reconnect storm",
        ),
    ):
        add_module_command(bsub, f"bench {name}", module, help_text)
