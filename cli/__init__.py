"""The `anju` command: for installers, operators and the demo."""
