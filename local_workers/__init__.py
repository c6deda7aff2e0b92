"""Local workers the demo, the tests and the benchmarks start on this machine: the simulated
Ollama worker (`sim/`, one worker or a fleet per process) and real `llama-server` processes
(`llamaserver.py`) with tiny GGUF models written on the spot (`tinygguf.py`).

Never imports `gateway` or `backends`: a local worker is a stranger to the gateway, as a real
worker is, and speaks only the wire (tests/unit/test_the_import_rules_hold.py says so as a test).
"""
