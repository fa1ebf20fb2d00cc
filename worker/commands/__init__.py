"""The `deskgate` command and its subcommands: check-config, setup, doctor, report, audit."""
