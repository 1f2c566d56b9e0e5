"""`python -m provisioner` runs the CLI (handy where the console script is not on PATH)."""

from provisioner.cli import main

main()
