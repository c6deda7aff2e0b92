"""`python -m local_workers.sim --port P ...`: a standalone simulated Ollama worker (see cli.py)."""

import argparse

from local_workers.sim.cli import add_sim_arguments, run_from_args

parser = argparse.ArgumentParser(prog="python -m local_workers.sim", description="A simulated Ollama worker.")
add_sim_arguments(parser)
run_from_args(parser.parse_args())
