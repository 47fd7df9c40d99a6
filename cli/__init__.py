"""The `motionlib` command line (typer + rich), thin over the engine and the catalogue."""
