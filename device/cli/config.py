"""`kiosk config show|check|reference`: the effective configuration, its check, its reference."""

from __future__ import annotations

import sys

from device import config as config_mod
from device.cli import config_option, load_config

HELP = {"config": "show or check the configuration"}


def cmd_config_show(args) -> int:
    cfg = load_config(args)
    sys.stdout.write(config_mod.dump(cfg, show_secrets=args.show_secrets))
    return 0


def cmd_config_check(args) -> int:
    cfg = load_config(args)
    print(f"{cfg.source or 'built-in defaults'}: ok")
    return 0


def cmd_config_reference(args) -> int:
    sys.stdout.write(config_mod.example_toml() if args.example else config_mod.reference_markdown())
    return 0


def register(sub) -> None:
    p = sub.add_parser("config", help="show or check the configuration", description="Show or check the configuration.")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    show = csub.add_parser("show", help="print the effective configuration (secrets masked)", description="Print the effective configuration as TOML: file, defaults and environment overrides together. Secrets are masked.")
    config_option(show)
    show.add_argument("--show-secrets", action="store_true", help="print secrets in clear")
    show.set_defaults(func=cmd_config_show)
    check = csub.add_parser("check", help="check a configuration file; exit 78 naming the bad key", description="Check the configuration and exit 0, or 78 with a message naming the file and key.")
    config_option(check)
    check.set_defaults(func=cmd_config_check)
    ref = csub.add_parser("reference", help="print the configuration reference (Markdown) generated from the schema", description="Print the table of every configuration key, its type, default and purpose, as in the README.")
    ref.add_argument("--example", action="store_true", help="print the commented example file (config/kiosk.toml) instead")
    ref.set_defaults(func=cmd_config_reference)
