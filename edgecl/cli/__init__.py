"""The `edgecl` command line: each command parses flags, makes one edgecl call and prints its report. The commands
live by what they do (setup_commands, learning, answering, service); this module registers them on the app in the
order `edgecl --help` lists them."""

from __future__ import annotations

from edgecl.cli import answering, learning, service, setup_commands
from edgecl.cli.base import app
from edgecl.cli.entry import main

for _command in (setup_commands.export, setup_commands.backbones, setup_commands.demo, learning.learn,
                 answering.classify, answering.status, learning.forget, learning.memory, learning.rollback,
                 service.bench, service.serve):  # fmt: skip
    app.command()(_command)
app.add_typer(service.fleet_app, name="fleet")
service.fleet_app.command("simulate")(service.fleet_simulate)
for _command in (setup_commands.devices, setup_commands.profile):
    app.command()(_command)

__all__ = ["app", "main"]
