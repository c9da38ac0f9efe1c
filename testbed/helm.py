"""The Helm chart deploy/helm/callvault as `helm template` renders it, with the helm that
`deploy/kube.sh install` builds (in .local/bin, or on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .stack import ROOT

CHART = ROOT / "deploy" / "helm" / "callvault"
CI_VALUES = CHART / "ci"
LOCAL_DIR = Path(os.environ.get("CALLVAULT_LOCAL_DIR", ROOT / ".local"))
KUBE_VERSION = "1.34.2"  # the kube-apiserver deploy/kube.sh builds


def local_binary(name: str) -> str | None:
    """``.local/bin/NAME`` when deploy/ built it, else NAME on PATH."""
    built = LOCAL_DIR / "bin" / name
    return str(built) if built.exists() else shutil.which(name)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = local_binary("helm")
    assert binary is not None, "helm is not installed: `deploy/kube.sh install` builds it"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, check=False, cwd=ROOT, timeout=120
    )


def template_args(values: list[Path], sets: dict[str, str], release: str) -> list[str]:
    args = ["template", release, str(CHART), "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["-f", str(path)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


def render(
    *values: Path, release: str = "shop", sets: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every manifest the chart renders for these values files (``--set`` ``sets``)."""
    done = helm(*template_args(list(values), sets or {}, release))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refusal(*values: Path, sets: dict[str, str] | None = None) -> str:
    """The error with which the chart refuses these values (it must refuse them)."""
    done = helm(*template_args(list(values), sets or {}, "shop"))
    assert done.returncode != 0, "the chart rendered values it should refuse"
    return done.stderr
