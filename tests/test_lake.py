"""The Lake contract, run against both lakes: a folder and an S3 bucket on SeaweedFS."""

import re
import socket

import pyarrow.dataset as ds
import pytest

from cloud.interfaces import BackendError, BackendUnavailable
from cloud.lake import FolderLake, S3Lake, s3_lake_url
from dataplane.ports import free_port
from dataplane.seaweed import SeaweedError, SeaweedPorts, start_seaweed, weed_command


@pytest.fixture(params=["folder", "s3"])
def any_lake(request):
    """Each lake implementation in turn (the S3 one under a fresh prefix of the session's bucket)."""
    return request.getfixturevalue("lake" if request.param == "folder" else "s3_lake")


def test_put_get_roundtrip_and_overwrite(any_lake):
    any_lake.put_bytes("raw/a/one.json", b'{"x": 1}\n')
    assert any_lake.get_bytes("raw/a/one.json") == b'{"x": 1}\n'
    any_lake.put_bytes("raw/a/one.json", b"second")
    assert any_lake.get_bytes("raw/a/one.json") == b"second"


def test_missing_key_is_key_error_and_exists_says_so(any_lake):
    with pytest.raises(KeyError):
        any_lake.get_bytes("raw/nothing-here")
    assert not any_lake.exists("raw/nothing-here")
    any_lake.put_bytes("raw/here", b"1")
    assert any_lake.exists("raw/here")


def test_list_objects_is_sorted_prefix_filtered_with_sizes(any_lake):
    for key in ["raw/b/2", "raw/a/1", "errors/x/3", "rawish/4"]:
        any_lake.put_bytes(key, key.encode())
    assert [(o.key, o.size) for o in any_lake.list_objects("raw/")] == [("raw/a/1", 7), ("raw/b/2", 7)]
    assert [o.key for o in any_lake.list_objects("raw")] == ["raw/a/1", "raw/b/2", "rawish/4"]
    assert any_lake.list_objects("curated/") == []


def test_s3_list_objects_pages_past_a_thousand_keys(s3_lake):
    # S3 answers at most 1,000 keys per call: listing must follow continuation tokens.
    for index in range(1005):
        s3_lake.put_bytes(f"many/{index:05d}", b"")
    keys = [o.key for o in s3_lake.list_objects("many/")]
    assert len(keys) == 1005 and keys[0] == "many/00000" and keys[-1] == "many/01004"


def test_delete_removes_and_tolerates_missing(any_lake):
    any_lake.put_bytes("models/job/output/model.tar.gz", b"m")
    any_lake.delete("models/job/output/model.tar.gz")
    any_lake.delete("models/job/output/model.tar.gz")
    assert not any_lake.exists("models/job/output/model.tar.gz")


def test_arrow_filesystem_addresses_keys(any_lake):
    any_lake.put_bytes("raw/year=2026/part.json", b'{"v": 1}\n{"v": 2}\n')
    filesystem, base = any_lake.arrow_filesystem()
    table = ds.dataset(f"{base}/raw", filesystem=filesystem, format="json").to_table()
    assert sorted(table.column("v").to_pylist()) == [1, 2]
    ds.write_dataset(table, f"{base}/curated/date=2026-11-27", filesystem=filesystem, format="parquet")
    # Arrow may leave directory markers on S3; they are not objects of the lake.
    keys = [o.key for o in any_lake.list_objects("curated/")]
    assert keys == ["curated/date=2026-11-27/part-0.parquet"]
    back = ds.dataset(f"{base}/curated", filesystem=filesystem, format="parquet", partitioning="hive").to_table()
    assert back.num_rows == 2


def test_local_paths_hold_the_contents(any_lake):
    any_lake.put_bytes("datasets/d/train/data.json", b"train")
    any_lake.put_bytes("datasets/d/test/data.json", b"test")
    with any_lake.local_paths(["datasets/d/train/data.json", "datasets/d/test/data.json"]) as paths:
        assert [p.read_bytes() for p in paths] == [b"train", b"test"]


def test_ping_passes_on_a_reachable_lake(any_lake):
    any_lake.ping()


def test_s3_lake_prefixes_are_isolated(s3_lake_url):
    one = S3Lake(s3_lake_url.replace("s3://iotcast-test", "s3://iotcast-test/one"))
    two = S3Lake(s3_lake_url.replace("s3://iotcast-test", "s3://iotcast-test/two"))
    one.put_bytes("raw/k", b"1")
    assert two.list_objects("raw/") == [] and [o.key for o in one.list_objects("raw/")] == ["raw/k"]


def test_s3_lake_creates_a_missing_bucket_on_a_local_store(s3_lake_url):
    fresh = S3Lake(s3_lake_url.replace("s3://iotcast-test", "s3://iotcast-fresh-bucket"))
    assert fresh.list_objects("raw/") == []
    fresh.put_bytes("raw/k", b"1")
    assert fresh.get_bytes("raw/k") == b"1"


def test_s3_lake_unreachable_store_is_backend_unavailable():
    lake = S3Lake(s3_lake_url("nobucket", endpoint=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(BackendUnavailable):
        lake.ping()
    with pytest.raises(BackendUnavailable):
        lake.get_bytes("raw/x")


def test_s3_lake_wrong_secret_is_a_backend_error(s3_lake_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(BackendError, match=r"SignatureDoesNotMatch|AccessDenied"):
        S3Lake(s3_lake_url).get_bytes("raw/x")


def test_lake_urls_are_parsed_and_rejected():
    url = s3_lake_url("bucket", "some/prefix", endpoint="http://127.0.0.1:8333", region="eu-west-1")
    assert url == "s3://bucket/some/prefix?endpoint=http://127.0.0.1:8333&region=eu-west-1"
    lake = S3Lake(url)
    assert (lake.bucket, lake.prefix, lake.endpoint, lake.region) == (
        "bucket",
        "some/prefix",
        "http://127.0.0.1:8333",
        "eu-west-1",
    )
    with pytest.raises(ValueError):
        S3Lake("file:///tmp/x")
    with pytest.raises(ValueError):
        FolderLake("s3://bucket")
    with pytest.raises(ValueError):
        lake.put_bytes("../escape", b"")


def test_seaweed_pins_every_port_away_from_the_defaults(tmp_path):
    ports = SeaweedPorts.choose(free_port())
    command = weed_command(tmp_path, ports)
    pinned = [int(flag.split("=")[1]) for flag in command if re.match(r"-[a-z0-9.]*port[a-z.]*=\d+$", flag)]
    pinned = [port for port in pinned if port]  # 0 switches a listener off
    assert len(pinned) == 10 and len(set(pinned)) == 10
    assert not set(pinned) & {8000, 8080, 8883, 8333, 9333, 8888, 23646, 18333, 19333, 18888}
    assert {"-webdav=false", "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0"} <= set(command)


def test_seaweed_refuses_a_taken_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SeaweedError, match="already in use"):
            start_seaweed(tmp_path, taken.getsockname()[1])
