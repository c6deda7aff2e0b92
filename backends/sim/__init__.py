"""A simulated Ollama worker: a real aiohttp server, faithful to Ollama's API and behaviour.

Tests, benchmarks and the demo use it. Imports nothing from gateway/.
"""

from backends.sim.catalog import SimModel, parse_models, parse_size
from backends.sim.engine import MODES, SimWorker
from backends.sim.server import SIM_WORKER, build_sim_app

__all__ = ["MODES", "SIM_WORKER", "SimModel", "SimWorker", "build_sim_app", "parse_models", "parse_size"]
