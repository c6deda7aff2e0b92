"""A simulated Ollama worker: a real aiohttp server, faithful to Ollama's HTTP API and behaviour
(residency in a VRAM budget, serial loads, eviction, slots, queue, keep-alive, failure modes).

Tests, benchmarks and the demo use it as a fake worker. Must never import gateway/.
"""

from local_workers.sim.app import SIM_WORKER, build_sim_app
from local_workers.sim.engine import MODES, SimWorker
from local_workers.sim.models import SimModel, parse_models, parse_size

__all__ = ["MODES", "SIM_WORKER", "SimModel", "SimWorker", "build_sim_app", "parse_models", "parse_size"]
