"""Probe which S3 features the configured endpoint supports (versitygw of the native stack,
or MinIO of docker-compose) with the minio SDK (minio<8), the client callvault uses.

Usage (any Python with minio<8; boto3 optional, used for a single-DELETE cross-check):
    set -a; . .local/stack.env; set +a
    .venv/bin/python deploy/s3/probe_s3.py

Creates and deletes throw-away buckets named callvault-probe-*; prints one line per
feature (ok / FAIL with the error) and exits 1 when a feature callvault needs fails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from urllib.parse import urlparse

from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED, GOVERNANCE, Filter
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, NoncurrentVersionExpiration, Rule
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.retention import Retention
from minio.versioningconfig import VersioningConfig

RESULTS: list[tuple[str, bool, str]] = []
# features callvault relies on; the others are informative
REQUIRED = {
    "make_bucket(object_lock=True)",
    "versioning enabled on lock bucket",
    "put_object returns version_id",
    "GOVERNANCE retention set/get",
    "delete locked version refused without bypass",
    "delete locked version with bypass (DeleteObjects)",
    "legal hold on/off",
    "delete under legal hold refused even with bypass",
    "presigned GET",
    "multipart upload (11 MiB, 5 MiB parts)",
    "list_object_versions",
}


def patch_minio_time_parser() -> None:
    """Make minio-py accept RFC 3339 times with more than 6 fractional digits."""
    import re

    import minio.datatypes
    import minio.time

    original = minio.time.from_iso8601utc

    def tolerant(value: str | None) -> dt.datetime | None:
        if value:
            value = re.sub(r"(\.\d{6})\d+Z$", r"\1Z", value)
        return original(value)

    minio.time.from_iso8601utc = tolerant
    minio.datatypes.from_iso8601utc = tolerant  # imported by name there


def check(name: str, fn: Callable[[], str | None]) -> None:
    try:
        detail = fn() or ""
        RESULTS.append((name, True, detail))
    except Exception as exc:  # noqa: BLE001 - a probe reports every failure
        RESULTS.append((name, False, f"{type(exc).__name__}: {exc}"))


def expect_s3_error(fn: Callable[[], object], codes: tuple[str, ...]) -> str:
    try:
        fn()
    except S3Error as exc:
        if exc.code in codes:
            return f"refused with {exc.code}"
        raise AssertionError(
            f"refused, but with unexpected code {exc.code}: {exc.message}"
        ) from exc
    raise AssertionError("the request succeeded but should have been refused")


def main() -> int:
    endpoint = os.environ.get("CALLVAULT_S3_ENDPOINT", "http://127.0.0.1:17070")
    url = urlparse(endpoint)
    region = os.environ.get("CALLVAULT_S3_REGION", "eu-central-1")
    access = os.environ.get("CALLVAULT_S3_ACCESS_KEY", "callvault")
    secret = os.environ.get("CALLVAULT_S3_SECRET_KEY", "callvault-secret-key")
    mc = Minio(
        url.netloc,
        access_key=access,
        secret_key=secret,
        secure=url.scheme == "https",
        region=region,
    )

    suffix = uuid.uuid4().hex[:8]
    lock_bucket = f"callvault-probe-lock-{suffix}"
    plain_bucket = f"callvault-probe-plain-{suffix}"
    now = dt.datetime.now(dt.UTC)
    state: dict[str, str] = {}

    check("make_bucket(object_lock=True)", lambda: mc.make_bucket(lock_bucket, object_lock=True))

    def versioning_on_lock_bucket() -> str:
        status = mc.get_bucket_versioning(lock_bucket).status
        assert status == ENABLED, f"status={status!r}"
        return status

    check("versioning enabled on lock bucket", versioning_on_lock_bucket)

    def put_versioned() -> str:
        r1 = mc.put_object(lock_bucket, "rec/a.bin", io.BytesIO(b"one"), 3)
        r2 = mc.put_object(lock_bucket, "rec/a.bin", io.BytesIO(b"two!"), 4)
        ids = (r1.version_id, r2.version_id)
        assert all(ids), ids
        assert r1.version_id != r2.version_id, ids
        state["v1"], state["v2"] = r1.version_id, r2.version_id
        return f"v1={r1.version_id} v2={r2.version_id}"

    check("put_object returns version_id", put_versioned)

    def get_old_version() -> str:
        data = mc.get_object(lock_bucket, "rec/a.bin", version_id=state["v1"]).read()
        assert data == b"one", data
        return "old version readable"

    check("get_object(version_id)", get_old_version)

    def governance() -> str:
        until = (now + dt.timedelta(days=1)).replace(microsecond=0)
        mc.set_object_retention(
            lock_bucket, "rec/a.bin", Retention(GOVERNANCE, until), version_id=state["v1"]
        )
        got = mc.get_object_retention(lock_bucket, "rec/a.bin", version_id=state["v1"])
        assert got is not None, "no retention returned"
        assert got.mode == GOVERNANCE, got.mode
        return f"mode={got.mode} until={got.retain_until_date}"

    check("GOVERNANCE retention set/get", governance)

    def stat_headers() -> str:
        st = mc.stat_object(lock_bucket, "rec/a.bin", version_id=state["v1"])
        hdrs = {k.lower(): v for k, v in (st.metadata or {}).items()}
        lock = {k: v for k, v in hdrs.items() if "object-lock" in k}
        assert lock, f"no x-amz-object-lock-* headers: {sorted(hdrs)}"
        return str(lock)

    check("stat_object shows x-amz-object-lock-* headers", stat_headers)

    check(
        "delete locked version refused without bypass",
        lambda: expect_s3_error(
            lambda: mc.remove_object(lock_bucket, "rec/a.bin", version_id=state["v1"]),
            ("AccessDenied", "ObjectLocked", "InvalidRequest"),
        ),
    )

    def reduce_governance_refused() -> str:
        earlier = (now + dt.timedelta(hours=1)).replace(microsecond=0)
        return expect_s3_error(
            lambda: mc.set_object_retention(
                lock_bucket, "rec/a.bin", Retention(GOVERNANCE, earlier), version_id=state["v1"]
            ),
            ("AccessDenied", "InvalidRequest", "ObjectLocked"),
        )

    check("shortening GOVERNANCE retention refused without bypass", reduce_governance_refused)

    def multi_delete_without_bypass() -> str:
        errs = list(mc.remove_objects(lock_bucket, [DeleteObject("rec/a.bin", state["v1"])]))
        assert errs, "DeleteObjects without bypass deleted a locked version"
        return f"refused with {errs[0].code}"

    check("DeleteObjects refused without bypass", multi_delete_without_bypass)

    def delete_with_bypass() -> str:
        errs = list(
            mc.remove_objects(
                lock_bucket, [DeleteObject("rec/a.bin", state["v1"])], bypass_governance_mode=True
            )
        )
        assert not errs, [(e.code, e.message) for e in errs]
        versions = [
            o.version_id
            for o in mc.list_objects(lock_bucket, prefix="rec/a.bin", include_version=True)
        ]
        assert state["v1"] not in versions, versions
        return "deleted"

    check("delete locked version with bypass (DeleteObjects)", delete_with_bypass)

    def single_delete_with_bypass_boto3() -> str:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            return "skipped (boto3 not installed)"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}),
        )
        r = s3.put_object(Bucket=lock_bucket, Key="rec/b.bin", Body=b"b")
        vid = r["VersionId"]
        s3.put_object_retention(
            Bucket=lock_bucket,
            Key="rec/b.bin",
            VersionId=vid,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": now + dt.timedelta(days=1)},
        )
        try:
            s3.delete_object(Bucket=lock_bucket, Key="rec/b.bin", VersionId=vid)
        except s3.exceptions.ClientError as exc:
            refused = exc.response["Error"]["Code"]
        else:
            raise AssertionError("single DELETE without bypass deleted a locked version")
        s3.delete_object(
            Bucket=lock_bucket, Key="rec/b.bin", VersionId=vid, BypassGovernanceRetention=True
        )
        return f"without bypass: {refused}; with x-amz-bypass-governance-retention: deleted"

    check("single DELETE ?versionId with bypass header (boto3)", single_delete_with_bypass_boto3)

    def legal_hold() -> str:
        mc.enable_object_legal_hold(lock_bucket, "rec/a.bin", version_id=state["v2"])
        assert mc.is_object_legal_hold_enabled(lock_bucket, "rec/a.bin", version_id=state["v2"])
        mc.disable_object_legal_hold(lock_bucket, "rec/a.bin", version_id=state["v2"])
        assert not mc.is_object_legal_hold_enabled(lock_bucket, "rec/a.bin", version_id=state["v2"])
        mc.enable_object_legal_hold(lock_bucket, "rec/a.bin", version_id=state["v2"])
        return "on/off/on"

    check("legal hold on/off", legal_hold)

    def legal_hold_blocks_bypass() -> str:
        errs = list(
            mc.remove_objects(
                lock_bucket, [DeleteObject("rec/a.bin", state["v2"])], bypass_governance_mode=True
            )
        )
        assert errs, "a version under legal hold was deleted with the governance bypass"
        mc.disable_object_legal_hold(lock_bucket, "rec/a.bin", version_id=state["v2"])
        mc.remove_object(lock_bucket, "rec/a.bin", version_id=state["v2"])
        return f"refused with {errs[0].code}; deleted after the hold was lifted"

    check("delete under legal hold refused even with bypass", legal_hold_blocks_bypass)

    def compliance() -> str:
        r = mc.put_object(lock_bucket, "rec/c.bin", io.BytesIO(b"c"), 1)
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)).replace(microsecond=0)
        mc.set_object_retention(
            lock_bucket, "rec/c.bin", Retention(COMPLIANCE, until), version_id=r.version_id
        )
        errs = list(
            mc.remove_objects(
                lock_bucket, [DeleteObject("rec/c.bin", r.version_id)], bypass_governance_mode=True
            )
        )
        assert errs, "COMPLIANCE-locked version deleted with governance bypass"
        time.sleep(6)
        mc.remove_object(lock_bucket, "rec/c.bin", version_id=r.version_id)
        return f"bypass refused ({errs[0].code}); deleted after expiry"

    check("COMPLIANCE retention not bypassable, deletable after expiry", compliance)

    def default_retention() -> str:
        mc.set_object_lock_config(lock_bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS))
        cfg = mc.get_object_lock_config(lock_bucket)
        r = mc.put_object(lock_bucket, "rec/d.bin", io.BytesIO(b"d"), 1)
        refused = expect_s3_error(
            lambda: mc.remove_object(lock_bucket, "rec/d.bin", version_id=r.version_id),
            ("AccessDenied", "ObjectLocked", "InvalidRequest"),
        )
        try:
            got = mc.get_object_retention(lock_bucket, "rec/d.bin", version_id=r.version_id)
            reported = got.mode if got else None
        except S3Error as exc:
            reported = exc.code
        errs = list(
            mc.remove_objects(
                lock_bucket, [DeleteObject("rec/d.bin", r.version_id)], bypass_governance_mode=True
            )
        )
        assert not errs, [(e.code, e.message) for e in errs]
        mc.delete_object_lock_config(lock_bucket)
        return (
            f"bucket default {cfg.mode} {cfg.duration}: delete without bypass {refused}; "
            f"GetObjectRetention of the new version reports {reported}"
        )

    check("bucket default retention enforced on new objects", default_retention)

    def delete_marker() -> str:
        mc.put_object(lock_bucket, "rec/e.bin", io.BytesIO(b"e"), 1)
        mc.remove_object(lock_bucket, "rec/e.bin")
        objs = list(mc.list_objects(lock_bucket, prefix="rec/e.bin", include_version=True))
        markers = [o for o in objs if o.is_delete_marker]
        assert markers, [(o.version_id, o.is_delete_marker) for o in objs]
        return f"{len(objs)} entries incl. {len(markers)} delete marker(s)"

    check("unversioned DELETE creates delete marker (minio list parse)", delete_marker)

    # versitygw writes a delete marker's LastModified with nanoseconds, which
    # minio-py 7.2's from_iso8601utc cannot parse; patched parser = workaround.
    patch_minio_time_parser()

    def delete_marker_patched() -> str:
        objs = list(mc.list_objects(lock_bucket, prefix="rec/e.bin", include_version=True))
        markers = [o for o in objs if o.is_delete_marker]
        assert markers, [(o.version_id, o.is_delete_marker) for o in objs]
        for o in objs:
            list(
                mc.remove_objects(
                    lock_bucket,
                    [DeleteObject(o.object_name, o.version_id)],
                    bypass_governance_mode=True,
                )
            )
        return f"{len(objs)} entries incl. {len(markers)} delete marker(s) with patched parser"

    check("delete marker listing with tolerant time parser", delete_marker_patched)

    def list_versions() -> str:
        mc.put_object(lock_bucket, "rec/v.bin", io.BytesIO(b"1"), 1)
        mc.put_object(lock_bucket, "rec/v.bin", io.BytesIO(b"22"), 2)
        objs = list(mc.list_objects(lock_bucket, prefix="rec/v.bin", include_version=True))
        latest = [o for o in objs if o.is_latest in (True, "true")]
        listing = [(o.version_id, o.is_latest) for o in objs]
        assert len(objs) >= 2, listing
        assert len(latest) == 1, listing
        return f"{len(objs)} versions, 1 latest"

    check("list_object_versions", list_versions)

    def presigned() -> str:
        mc.put_object(lock_bucket, "rec/p.bin", io.BytesIO(b"presigned"), 9)
        link = mc.presigned_get_object(lock_bucket, "rec/p.bin", expires=dt.timedelta(minutes=5))
        with urllib.request.urlopen(link, timeout=10) as resp:  # noqa: S310 - local endpoint
            body = resp.read()
        assert body == b"presigned", body
        return "200, body matches"

    check("presigned GET", presigned)

    def presigned_expired() -> str:
        link = mc.presigned_get_object(lock_bucket, "rec/p.bin", expires=dt.timedelta(seconds=1))
        time.sleep(2)
        try:
            urllib.request.urlopen(link, timeout=10)  # noqa: S310
        except urllib.error.HTTPError as exc:
            return f"expired link refused with HTTP {exc.code}"
        raise AssertionError("expired presigned link still works")

    check("presigned GET expiry enforced", presigned_expired)

    def multipart() -> str:
        data = os.urandom(11 * 1024 * 1024)
        r = mc.put_object(
            lock_bucket, "rec/big.bin", io.BytesIO(data), -1, part_size=5 * 1024 * 1024
        )
        got = mc.get_object(lock_bucket, "rec/big.bin").read()
        assert got == data
        return f"etag={r.etag} version={r.version_id}"

    check("multipart upload (11 MiB, 5 MiB parts)", multipart)

    def plain_bucket_versioning() -> str:
        mc.make_bucket(plain_bucket)
        mc.set_bucket_versioning(plain_bucket, VersioningConfig(ENABLED))
        status = mc.get_bucket_versioning(plain_bucket).status
        assert status == ENABLED, status
        return status

    check("set_bucket_versioning on plain bucket", plain_bucket_versioning)

    def lock_on_existing_bucket() -> str:
        mc.set_object_lock_config(plain_bucket, ObjectLockConfig(GOVERNANCE, 1, DAYS))
        return "accepted"

    check("object lock enabled on an existing versioned bucket", lock_on_existing_bucket)

    def lifecycle() -> str:
        cfg = LifecycleConfig(
            [
                Rule(
                    ENABLED,
                    rule_filter=Filter(prefix=""),
                    rule_id="retention-backstop",
                    expiration=Expiration(days=395),
                    noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=30),
                ),
            ]
        )
        mc.set_bucket_lifecycle(lock_bucket, cfg)
        got = mc.get_bucket_lifecycle(lock_bucket)
        assert got is not None, "no lifecycle returned"
        assert got.rules, got
        return f"stored {len(got.rules)} rule(s); expiry is NOT verified (needs days)"

    check("bucket lifecycle put/get", lifecycle)

    def tags() -> str:
        from minio.commonconfig import Tags

        mc.put_object(plain_bucket, "t.bin", io.BytesIO(b"t"), 1)
        t = Tags.new_object_tags()
        t["kind"] = "recording"
        mc.set_object_tags(plain_bucket, "t.bin", t)
        got = mc.get_object_tags(plain_bucket, "t.bin")
        assert got is not None, "no tags returned"
        assert got.get("kind") == "recording", got
        return "ok"

    check("object tagging", tags)

    def user_metadata() -> str:
        mc.put_object(
            plain_bucket,
            "m.bin",
            io.BytesIO(b"m"),
            1,
            metadata={"x-amz-meta-callvault-call": "abc"},
        )
        st = mc.stat_object(plain_bucket, "m.bin")
        meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
        assert meta.get("x-amz-meta-callvault-call") == "abc", meta
        return "ok"

    check("user metadata round trip", user_metadata)

    # clean up (best effort; remaining locked versions are bypassed, holds lifted)
    for bucket in (lock_bucket, plain_bucket):
        try:
            for o in mc.list_objects(bucket, recursive=True, include_version=True):
                with contextlib.suppress(S3Error):
                    mc.disable_object_legal_hold(bucket, o.object_name, version_id=o.version_id)
                list(
                    mc.remove_objects(
                        bucket,
                        [DeleteObject(o.object_name, o.version_id)],
                        bypass_governance_mode=True,
                    )
                )
            mc.remove_bucket(bucket)
        except Exception as exc:  # noqa: BLE001 - best effort
            print(f"cleanup of {bucket} failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    width = max(len(n) for n, _, _ in RESULTS)
    failed_required = 0
    for name, ok, detail in RESULTS:
        mark = "ok  " if ok else ("FAIL" if name in REQUIRED else "no  ")
        failed_required += (not ok) and name in REQUIRED
        print(f"{mark} {name:<{width}}  {detail}")
    return 1 if failed_required else 0


if __name__ == "__main__":
    sys.exit(main())
