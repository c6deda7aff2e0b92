from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = b"""
[[workers]]
name = "gpu0"
url = "http://127.0.0.1:11435/"
kind = "ollama"
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text.encode())
    return info.value.errors


def test_minimal_config_gets_documented_defaults():
    config = parse_config(MINIMAL)
    worker = config.workers[0]
    assert worker.url == "http://127.0.0.1:11435"  # trailing slash dropped so paths join cleanly
    assert worker.tier == "gpu" and worker.max_inflight is None and worker.vram_gib is None
    assert config.health.interval_s == 2.0 and config.health.unhealthy_threshold == 3
    assert config.failover.first_byte_timeout_s == 60.0
    assert config.server.max_body_mib == 64.0
    assert len(config.version) == 12


def test_the_example_config_is_valid_and_documents_every_section():
    config = load_config(ROOT / "config.example.toml")
    text = (ROOT / "config.example.toml").read_text()
    for section in ("[[workers]]", "[models.", "[health]", "[failover]", "[server]"):
        assert section in text
    assert {w.tier for w in config.workers} == {"gpu", "cpu"}


def test_every_schema_error_is_reported_at_once_with_its_key_path():
    problems = errors_of("""
[[workers]]
name = "gpu0"
url = "ftp://somewhere"
kind = "tgi"
tier = "tpu"
vram_gib = -4
colour = "blue"

[health]
interval_s = "fast"
""")
    joined = "\n".join(problems)
    assert "workers[0].url: must be an http:// or https:// URL" in joined
    assert "workers[0].kind: unsupported worker kind 'tgi'" in joined
    assert "workers[0].tier:" in joined
    assert "workers[0].vram_gib:" in joined
    assert "workers[0].colour: unknown key" in joined
    assert "health.interval_s:" in joined
    assert len(problems) == 6


def test_cross_key_rules_name_every_offender():
    problems = errors_of("""
[[workers]]
name = "gpu0"
url = "http://a:1"
kind = "ollama"
[[workers]]
name = "gpu0"
url = "http://b:1"
kind = "ollama"
[models."llama3"]
aliases = ["default"]
pull_to = ["gpu", "nowhere"]
[models."llama3:latest"]
[models."qwen2.5:7b"]
aliases = ["default"]
""")
    joined = "\n".join(problems)
    assert "workers[1].name: duplicate worker name 'gpu0'" in joined
    assert 'models."llama3:latest": same model as models."llama3"' in joined
    assert "models.\"qwen2.5:7b\".aliases[0]: 'default' already names model 'llama3'" in joined
    assert "models.\"llama3\".pull_to[1]: 'nowhere' is neither a tier" in joined


def test_no_workers_toml_syntax_and_unreadable_files_are_errors(tmp_path):
    assert any("workers" in p for p in errors_of("[health]\ninterval_s = 1\n"))
    assert errors_of("[[workers]\nname=")[0].startswith("TOML syntax:")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert "cannot read config file" in info.value.errors[0]


def test_version_changes_with_the_file_contents():
    assert parse_config(MINIMAL).version != parse_config(MINIMAL + b"\n[health]\ninterval_s = 5\n").version


def test_the_example_documents_every_key_of_the_schema():
    import re

    from gateway import config as schema

    sections = {"workers": schema.WorkerConfig, "models": schema.ModelConfig, "clients": schema.ClientConfig}
    for name, field in schema.RoutingConfig.model_fields.items():
        sections.setdefault(name, field.annotation)
    comments = "\n".join(line for line in (ROOT / "config.example.toml").read_text().splitlines()
                         if line.lstrip().startswith("#"))
    missing = [f"{section}.{key}" for section, model in sections.items() for key in model.model_fields
               if not re.search(rf"\b{key}\b", comments)]
    assert missing == [], f"config.example.toml does not explain: {missing}"


def test_keep_alive_numbers_written_as_strings_are_sent_as_numbers():
    config = parse_config(MINIMAL + b'[models."a"]\nkeep_alive = "-1"\n[models."b"]\nkeep_alive = "30m"\n')
    assert config.models["a"].keep_alive == -1 and config.models["b"].keep_alive == "30m"
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + b'[models."c"]\nkeep_alive = "soon"\n')
    assert 'models."c".keep_alive' in info.value.errors[0]
