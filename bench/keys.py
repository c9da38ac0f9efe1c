"""Keys in a PKCS#11 token (SoftHSM2) beside keys in the process, in the same run: ingest
throughput through a worker process and DSR erasure latency, each measured on two instances
that differ only in ``CALLVAULT_KEYS_BACKEND``. Goals: the token costs at most 10 % of ingest
throughput (``ingest_ratio`` = token ÷ in-process ≥ 0.9) and keeps the erasure goal (20
recordings among 1 M: p95 ≤ 1 s)."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from testbed.softhsm import KEY_SETTINGS, SoftToken, delete_token, new_token
from testbed.stack import Instance

from . import common, dsr
from .common import CALLVAULT, log
from .ingest import AUDIO_BYTES, pipeline

ROUNDS = 2  # in-process and token runs alternate, so a slower minute of the machine hits both


def token_instance(stack: dict[str, str], label: str, token: SoftToken) -> Instance:
    """An instance whose keys are generated in ``token``; no key in its settings."""
    inst = common.new_instance(stack, label, **token.env())
    for name in KEY_SETTINGS:
        inst.env.pop(name, None)
        os.environ.pop(name, None)  # the workers inherit this process's environment
    subprocess.run(
        [CALLVAULT, "keys", "generate"],
        env={**os.environ, **inst.env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return inst


def run(quick: bool, rebuild: bool = False) -> dict[str, Any]:
    from workers.bootstrap import object_store

    n = 40 if quick else 300
    stack = common.ensure_stack()
    with tempfile.TemporaryDirectory() as scratch:
        token = new_token(Path(scratch))
        local = common.new_instance(stack, "keyl")
        inside = token_instance(stack, "keyt", token)
        try:
            for inst in (local, inside):
                common.migrate(inst)
            objects = object_store(local.settings())
            audio = common.wav_bytes(AUDIO_BYTES)
            concurrency = local.settings().concurrency
            runs: dict[str, list[dict[str, Any]]] = {"local": [], "pkcs11": []}
            for r in range(ROUNDS):
                for name, inst in (("local", local), ("pkcs11", inside)):
                    log(f"keys: ingest round {r + 1}, {n} calls, keys {name}")
                    runs[name].append(
                        pipeline(inst, objects, n, audio, 1, concurrency, tag=f"{name}{r}")
                    )
            log("keys: erasure latency, keys in the process")
            erasure_local = dsr.measure(local, quick)
            log("keys: erasure latency, keys in the token")
            erasure_token = dsr.measure(inside, quick)
        finally:
            common.drop_instance(local)
            common.drop_instance(inside)
            delete_token(token)
    rate = {k: statistics.mean(r["calls_per_s"] for r in v) for k, v in runs.items()}
    return {
        "params": {"n": n, "rounds": ROUNDS, "audio_bytes": AUDIO_BYTES, "quick": quick},
        "ingest": runs,
        "ingest_calls_per_s": {k: round(v, 2) for k, v in rate.items()},
        "ingest_ratio": round(rate["pkcs11"] / rate["local"], 3),
        "erasure": {"local": erasure_local, "pkcs11": erasure_token},
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    rate, p = result["ingest_calls_per_s"], result["params"]
    erasure = result["erasure"]
    cpu = {
        k: statistics.mean(r["worker_cpu_ms_per_call"] for r in v)
        for k, v in result["ingest"].items()
    }
    found = [
        (
            "keys",
            f"ingest, {p['n']} calls x {p['rounds']} rounds: in-process / token",
            f"{rate['local']:.1f} / {rate['pkcs11']:.1f} calls/s "
            f"(ratio {result['ingest_ratio']:.2f}; worker CPU {cpu['local']:.1f} / "
            f"{cpu['pkcs11']:.1f} ms/call)",
        )
    ]
    for name in ("local", "pkcs11"):
        e = erasure[name]
        lat, many = e["latency_s"], e["subject_with_many"]
        found.append(
            (
                "keys",
                f"erasure, keys {name}: {e['params']['recordings_per_subject']} recs among "
                f"{e['params']['other_recordings']:,}; {many['recordings']} of one subject",
                f"p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s; {many['latency_s']:.2f} s",
            )
        )
    return found
