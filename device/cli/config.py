"""`kiosk config show|check|reference`: the effective configuration, its check, its reference."""

from __future__ import annotations

import sys

from device import config as config_mod
from device.cli import add_command, add_group, load_config

HELP = {"config": "show or check the configuration"}


def cmd_config_show(args) -> int:
    """Print the effective configuration (secrets masked).

    Print the effective configuration as TOML: file, defaults and environment overrides together,
    each value followed by where it came from (# file, # default, # environment KIOSK_...), the
    file's path once at the top. Secrets are masked unless --show-secrets. The output loads as
    TOML: it can be saved as a config file.

    Example: kiosk config show --config /etc/kiosk/kiosk.toml
    """
    cfg = load_config(args)
    sys.stdout.write(config_mod.dump(cfg, show_secrets=args.show_secrets))
    return 0


def cmd_config_check(args) -> int:
    """Check a configuration file; exit 78 naming the bad key.

    Check the configuration and exit 0, or 78 with a message naming the file and key.

    Example: kiosk config check --config /etc/kiosk/kiosk.toml
    """
    cfg = load_config(args)
    print(f"{cfg.source or 'built-in defaults'}: ok")
    return 0


def cmd_config_reference(args) -> int:
    """Print the configuration reference (Markdown) generated from the schema.

    Print the table of every configuration key, its type, default and purpose, as in docs/CONFIGURATION.md.

    Example: kiosk config reference --example > kiosk.toml
    """
    sys.stdout.write(config_mod.example_toml() if args.example else config_mod.reference_markdown())
    return 0


def register(sub) -> None:
    csub = add_group(sub, "config", HELP["config"], "Show or check the configuration.", example="kiosk config check", dest="config_command")
    show = add_command(csub, "show", cmd_config_show)
    show.add_argument("--show-secrets", action="store_true", help="print secrets in clear")
    add_command(csub, "check", cmd_config_check)
    ref = add_command(csub, "reference", cmd_config_reference, config=False)
    ref.add_argument("--example", action="store_true", help="print the commented example file (config/kiosk.toml) instead")
