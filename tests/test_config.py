"""Run configuration: presets, overrides, type and range checks, error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nanogpt2.training import ConfigError, RunConfig, config_from_dict, describe_fields, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_gpt2_124m_reproduction() -> None:
    c = RunConfig()
    assert (c.model.n_layer, c.model.n_head, c.model.n_embd, c.model.seq_len, c.model.vocab_size) == (
        12, 12, 768, 1024, 50304)
    t = c.train
    assert (t.total_batch_tokens, t.lr, t.min_lr_ratio) == (524_288, 6e-4, 0.1)
    assert (t.warmup_steps, t.max_steps) == (715, 19_073)
    assert (t.betas, t.eps, t.weight_decay, t.grad_clip) == ([0.9, 0.95], 1e-8, 0.1, 1.0)
    assert c.grad_accum_steps(world_size=1) == 8 and c.grad_accum_steps(world_size=8) == 1


@pytest.mark.parametrize("preset", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_run_preset_parses(preset: Path) -> None:
    config = load_config(preset)
    listed = yaml.safe_load(preset.read_text())
    if "model" in listed:  # what a preset lists is what it gets
        for key, value in listed["model"].items():
            assert getattr(config.model, key) == value
    config.grad_accum_steps(world_size=1)  # its batch divides on one process


@pytest.mark.parametrize("preset", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_parses(preset: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(preset))
    assert config.num_processes >= 1 and config.compute_environment.value == "LOCAL_MACHINE"


def test_gpt2_preset_batch_divides_on_1_and_8_gpus() -> None:
    config = load_config(CONFIGS / "gpt2-124m.yaml")
    assert config.train.compile and config.model.n_embd == 768
    assert config.grad_accum_steps(1) == 8 and config.grad_accum_steps(8) == 1


def test_overrides_are_typed_and_applied_after_the_preset() -> None:
    c = load_config(CONFIGS / "smoke.yaml", [
        "out_dir=runs/a", "train.max_steps=20", "checkpoint.every=5", "data.path=DIR", "seed=1",
        "train.lr=1e-3", "train.betas=[0.8, 0.9]", "eval.hellaswag_path=null", "eval.sample_prompt=no",
        "train.compile=true", "logging.run_name=123",
    ])
    assert (c.out_dir, c.train.max_steps, c.checkpoint.every, c.data.path, c.seed) == ("runs/a", 20, 5, "DIR", 1)
    assert c.train.lr == 1e-3 and isinstance(c.train.lr, float)  # '1e-3' is a string to YAML 1.1
    assert c.train.betas == [0.8, 0.9]
    assert c.eval.hellaswag_path is None
    assert c.eval.sample_prompt == "no" and c.logging.run_name == "123"  # string fields keep the text
    assert c.train.compile is True
    assert c.model.n_embd == 64  # from the preset


def test_saved_config_round_trips() -> None:
    c = load_config(CONFIGS / "smoke.yaml", ["seed=7", "train.betas=[0.8, 0.9]"])
    assert config_from_dict(yaml.safe_load(c.to_yaml())) == c


@pytest.mark.parametrize("override,message", [
    ("train.foo=1", "unknown key train.foo; valid keys in train: micro_batch_size, total_batch_tokens"),
    ("trian.lr=1", "unknown key trian.lr; valid keys: out_dir, seed, init_from, resume, model, data, train"),
    ("train.max_steps=abc", "train.max_steps: Value 'abc' of type 'str' could not be converted to Integer"),
    ("train.max_steps=2.5", "train.max_steps: Value '2.5' of type 'float' could not be converted to Integer"),
    ("train.compile=maybe", "train.compile: Value 'maybe' is not a valid bool"),
    ("train.betas=[0.9, x]", "train.betas[1]: Value 'x' of type 'str' could not be converted to Float"),
    ("train.lr=-1", "train.lr: must be > 0, got -1.0"),
    ("train.mixed_precision=fp8", "train.mixed_precision: must be one of auto, bf16, fp16, no, got 'fp8'"),
    ("model.n_embd=100", "model.n_embd: must be divisible by model.n_head (12), got 100"),
    ("train.betas=[0.9]", "train.betas: must be two numbers in [0, 1), got [0.9]"),
    ("logging.tracker=tensorboard", "logging.tracker: must be one of wandb, none, got 'tensorboard'"),
    ("hub.push=true", "hub.repo_id: must be set when hub.push is true"),
    ("model=3", "model is a section; set one of its keys: n_layer, n_head"),
    ("seed.x=1", "seed is not a section"),
    ("seed", "override 'seed' is not of the form key=value"),
])
def test_bad_overrides_name_the_key_and_the_valid_choices(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_preset_keys_are_errors(tmp_path: Path) -> None:
    preset = tmp_path / "bad.yaml"
    preset.write_text("model:\n  n_layers: 4\n")
    with pytest.raises(ConfigError, match="unknown key model.n_layers; valid keys in model: n_layer, n_head"):
        load_config(preset)
    preset.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(preset)
    preset.write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="train.lr: Value 'fast' of type 'str' could not be converted to Float"):
        load_config(preset)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_batch_must_divide_into_micro_batches() -> None:
    c = load_config(None, ["train.total_batch_tokens=524288", "train.micro_batch_size=48"])
    with pytest.raises(ConfigError, match=r"train.total_batch_tokens: 524288 is not a multiple of .* 48 x 1024 x 1"):
        c.grad_accum_steps(1)


def test_every_field_is_documented() -> None:
    rows = describe_fields()
    assert len(rows) > 40
    undocumented = [key for key, _, doc in rows if not doc]
    assert not undocumented


def test_model_section_builds_the_transformers_config() -> None:
    hf = load_config(CONFIGS / "smoke.yaml").model.to_hf_config(tokenizer_vocab_size=50257, eot_id=50256)
    assert (hf.n_layer, hf.n_head, hf.n_embd, hf.n_positions, hf.vocab_size) == (4, 4, 64, 64, 50304)
    assert hf.num_real_tokens == 50257 and hf.eos_token_id == 50256
    with pytest.raises(ConfigError, match="model.vocab_size: 50304 is smaller than the tokenizer's 60000 ids"):
        RunConfig().model.to_hf_config(tokenizer_vocab_size=60000, eot_id=0)


def test_pretrain_help_config_lists_every_key(capsys: pytest.CaptureFixture) -> None:
    from nanogpt2.cli import main

    assert main(["pretrain", "--help-config"]) == 0
    listed = [line.split(" = ")[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert listed == [key for key, _, _ in describe_fields()]


def test_bad_override_through_the_command_is_one_line(capsys: pytest.CaptureFixture) -> None:
    from nanogpt2.cli import main

    assert main(["pretrain", "train.foo=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown key train.foo") and len(err.strip().splitlines()) == 1
