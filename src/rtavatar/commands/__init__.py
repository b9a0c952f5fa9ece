"""The `rtavatar` subcommands' own code (demo, generate, bench, calibrate-warp), on top of every
other layer: only cli.py imports this package (tests/test_layers.py checks)."""
