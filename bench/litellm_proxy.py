"""LiteLLM's proxy as a comparison point for bench/overhead.py --compare-litellm: installed into a venv
of its own (never Warden's), configured to route one model to the same fake upstream as Warden, and kept
off the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import yaml

LITELLM_VERSION = "1.108.7"
MASTER_KEY = "sk-warden-bench"

# LiteLLM fetches its cost map, Anthropic beta headers, autorouter presets, blog posts and policy
# templates from GitHub unless told to use the copies it ships; a benchmark must not wait on the network.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "HF_HUB_OFFLINE": "1",
    "LITELLM_LOG": "ERROR",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
}


def installed_version(venv: Path) -> str | None:
    # Asks the package metadata: importing litellm itself takes seconds.
    python = venv / "bin" / "python"
    if not (python.exists() and (venv / "bin" / "litellm").exists()):
        return None
    found = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return found.stdout.strip() if found.returncode == 0 else None


def ensure_venv(venv: Path, timeout: float = 900) -> tuple[Path, str]:
    """Return the venv's `litellm` script and litellm's version there, creating the venv and installing
    the pinned proxy first if it has no litellm yet (a venv given with another version is used as is)."""
    script = venv / "bin" / "litellm"
    version = installed_version(venv)
    if version:
        return script, version
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} (once; a minute or two)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # Output is kept for a failure only: the registry index and the resolver are noisy even with -q.
    done = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(f"pip install failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return script, installed_version(venv) or LITELLM_VERSION


def write_config(path: Path, model: str, upstream_url: str) -> None:
    """One deployment of `model` at `upstream_url` (an OpenAI base URL ending in /v1), no database, no
    callbacks; requests must carry MASTER_KEY, as Warden's must carry an API key."""
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": upstream_url,
                    "api_key": "sk-fake",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "set_verbose": False},
        "general_settings": {"master_key": MASTER_KEY},
    }
    path.write_text(yaml.safe_dump(config))


def start(script: Path, config: Path, port: int, log: IO[Any] | int, cwd: Path) -> subprocess.Popen[bytes]:
    """`litellm --num_workers 1` on loopback, in a process group of its own so that it and anything it
    forks can be ended together."""
    env = {**os.environ, **OFFLINE_ENV}
    env.pop("DATABASE_URL", None)  # a DATABASE_URL in the caller's environment would make it use Prisma
    return subprocess.Popen(
        [
            str(script),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log is not subprocess.DEVNULL else subprocess.DEVNULL,
        start_new_session=True,
    )
