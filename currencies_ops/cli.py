"""The operator commands, which `currencies_local.cli` adds to the `currencies` command line."""

from __future__ import annotations

from currencies_ops.deploy.deploy_commands import configure_mappings, provision
from currencies_ops.deploy.package_command import package
from currencies_ops.redrive_command import redrive
from currencies_ops.repair_commands import backfill, replay
from currencies_ops.verify_command import verify

COMMANDS = (verify, backfill, replay, redrive, provision, configure_mappings, package)
