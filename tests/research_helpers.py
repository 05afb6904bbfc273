"""Shared steps of the research API tests: upload the samples, preflight, run a job to its end."""

from __future__ import annotations

import time
from typing import Any

import httpx

from glasskey.research.demo import QUESTION, SAMPLES, sample_bytes

__all__ = ["QUESTION", "SAMPLES", "auth", "job_body", "sample_bytes", "upload", "upload_samples", "wait_finished"]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(base: str, key: str, files: dict[str, bytes]) -> httpx.Response:
    parts = [("file", (name, data)) for name, data in files.items()]
    return httpx.post(f"{base}/research/files", headers=auth(key), files=parts, timeout=30)


def upload_samples(base: str, key: str) -> list[str]:
    response = upload(base, key, {name: sample_bytes(name) for name in SAMPLES})
    assert response.status_code == 201, response.text
    return [f["id"] for f in response.json()["data"]]


def job_body(file_ids: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "question": QUESTION,
        "inputs": file_ids,
        "depth": "quick",
        "risk_free_rate": "0.02",
        "start": "2005-01-01",
        "end": "2010-01-01",
        **extra,
    }


def wait_finished(base: str, key: str, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{base}/research/jobs/{job_id}", headers=auth(key)).json()
        if job["status"] in ("succeeded", "failed", "cancelled", "capped"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")
