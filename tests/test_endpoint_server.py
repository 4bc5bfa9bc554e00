"""The endpoint server through boto3's sagemaker-runtime invoke_endpoint, exactly as on AWS."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections import Counter

import boto3
import pandas as pd
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloud.interfaces import BackendError, BackendUnavailable, InvocationError, VariantSpec
from cloud.local.hosting import LocalEndpointHosting
from dataplane.ports import free_port
from tests.fixtures.endpoint import TINY_MODEL_KEY, broken_artifact, start_endpoint_server

QUANTILES = ["0.1", "0.5", "0.9"]


@pytest.fixture
def server(lake, tiny_model_in_lake, tmp_path):
    url, httpd, thread = start_endpoint_server(lake, tmp_path / "state")
    hosting = LocalEndpointHosting(url, "us-east-1")
    hosting.apply_endpoint(
        "demo", [VariantSpec("A", "tiny", TINY_MODEL_KEY, 3.0), VariantSpec("B", "tiny", TINY_MODEL_KEY, 1.0)]
    )
    yield url, hosting
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def runtime(server):
    url, _ = server
    return boto3.client(
        "sagemaker-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
        aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def request_body(tiny_model, configuration: dict | None = None, count: int = 1) -> bytes:
    instance = json.loads(tiny_model.train_lines[0])
    body = {"instances": [instance] * count}
    if configuration is not None:
        body["configuration"] = configuration
    return json.dumps(body).encode()


def test_invoke_endpoint_answers_deepar_predictions(runtime, tiny_model):
    config = {"num_samples": 20, "output_types": ["mean", "quantiles", "samples"], "quantiles": QUANTILES}
    response = runtime.invoke_endpoint(
        EndpointName="demo", Body=request_body(tiny_model, config, count=2), ContentType="application/json"
    )
    assert response["InvokedProductionVariant"] in {"A", "B"} and response["ContentType"] == "application/json"
    predictions = json.loads(response["Body"].read())["predictions"]
    assert len(predictions) == 2
    for prediction in predictions:
        assert len(prediction["mean"]) == 12 and list(prediction["quantiles"]) == QUANTILES
        assert len(prediction["samples"]) == 20 and all(len(path) == 12 for path in prediction["samples"])
        low, mid, high = (prediction["quantiles"][q] for q in QUANTILES)
        assert all(a <= b <= c for a, b, c in zip(low, mid, high, strict=True))
        assert any(a < c for a, c in zip(low, high, strict=True))  # samples really vary


def test_default_configuration_and_seeded_predictions(runtime, tiny_model):
    answer = json.loads(runtime.invoke_endpoint(EndpointName="demo", Body=request_body(tiny_model))["Body"].read())
    prediction = answer["predictions"][0]
    assert set(prediction) == {"mean", "quantiles"} and len(prediction["quantiles"]) == 9
    config = {"num_samples": 10, "seed": 42, "output_types": ["samples"]}
    first, second = (
        json.loads(runtime.invoke_endpoint(EndpointName="demo", Body=request_body(tiny_model, config))["Body"].read())
        for _ in range(2)
    )
    assert first == second and set(first["predictions"][0]) == {"samples"}


def test_target_variant_is_honoured_and_weights_split_traffic(runtime, tiny_model):
    body = request_body(tiny_model, {"num_samples": 2, "output_types": ["mean"]})
    targeted = {runtime.invoke_endpoint(EndpointName="demo", Body=body, TargetVariant="B")["InvokedProductionVariant"]}
    assert targeted == {"B"}
    served = Counter(
        runtime.invoke_endpoint(EndpointName="demo", Body=body)["InvokedProductionVariant"] for _ in range(200)
    )
    assert 0.65 <= served["A"] / 200 <= 0.85 and served["A"] + served["B"] == 200  # weights 3:1


def test_weights_change_without_restart(server, runtime, tiny_model):
    _, hosting = server
    hosting.apply_endpoint("demo", [VariantSpec("B", "tiny", TINY_MODEL_KEY, 1.0)])
    body = request_body(tiny_model, {"num_samples": 2})
    assert {runtime.invoke_endpoint(EndpointName="demo", Body=body)["InvokedProductionVariant"] for _ in range(10)} == {
        "B"
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"instances": []}', "instances must be a non-empty list"),
        (b'{"instances": [{"start": "2026-11-01 00:00:00", "target": [1, "x"], "cat": [0]}]}', "target[1]"),
        (b'{"instances": [{"start": "2026-11-01 00:00:00", "target": [1], "cat": [0]}], '
         b'"configuration": {"quantiles": ["1.5"]}}', "configuration.quantiles"),
        (b'{"instances": [{"start": "2026-11-01 00:00:00", "target": [1.0, 2.0]}]}', "cat"),
    ],
)  # fmt: skip
def test_bad_requests_are_validation_errors(runtime, body, message):
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="demo", Body=body, TargetVariant="A")
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400 and error["Error"]["Code"] == "ValidationError"
    assert message in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPHeaders"]["x-amzn-invoked-production-variant"] == "A"


def test_unknown_endpoint_and_variant_are_validation_errors(server, tiny_model):
    _, hosting = server
    with pytest.raises(InvocationError) as caught:
        hosting.invoke("nope", request_body(tiny_model))
    assert (caught.value.status, caught.value.error_type) == (400, "ValidationError")
    assert "Endpoint nope of account local not found" in caught.value.message
    with pytest.raises(InvocationError, match="Target variant C does not exist"):
        hosting.invoke("demo", request_body(tiny_model), target_variant="C")


def test_hosting_backend_invokes_and_reports_the_variant(server, tiny_model):
    _, hosting = server
    answer = hosting.invoke("demo", request_body(tiny_model, {"num_samples": 5}), target_variant="A")
    assert answer.invoked_variant == "A" and answer.content_type == "application/json"
    assert len(json.loads(answer.body)["predictions"][0]["mean"]) == 12
    hosting.ping()


def test_endpoints_survive_a_restart_and_admin_reads_them(server, lake, tmp_path, tiny_model):
    url, _ = server
    with urllib.request.urlopen(f"{url}/admin/endpoints/demo") as response:
        assert [v["name"] for v in json.loads(response.read())["variants"]] == ["A", "B"]
    url2, httpd, thread = start_endpoint_server(lake, tmp_path / "state")  # same state dir, fresh process state
    try:
        answer = LocalEndpointHosting(url2).invoke("demo", request_body(tiny_model, {"num_samples": 5}))
        assert answer.invoked_variant in {"A", "B"}
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_apply_refuses_a_missing_artifact_and_bad_weights(server):
    _, hosting = server
    with pytest.raises(BackendError, match="not in the lake"):
        hosting.apply_endpoint("demo", [VariantSpec("A", "x", "models/missing/output/model.tar.gz", 1.0)])
    with pytest.raises(BackendError, match="positive weight"):
        hosting.apply_endpoint("demo", [VariantSpec("A", "tiny", TINY_MODEL_KEY, 0.0)])


def test_unreachable_server_is_backend_unavailable():
    hosting = LocalEndpointHosting(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailable):
        hosting.invoke("demo", b"{}")
    with pytest.raises(BackendUnavailable):
        hosting.ping()


def test_custom_attributes_seed_makes_forecasts_reproducible(runtime, tiny_model):
    body = request_body(tiny_model, {"num_samples": 10, "output_types": ["samples"]})

    def ask(seed: int) -> dict:
        response = runtime.invoke_endpoint(EndpointName="demo", Body=body, CustomAttributes=f"trace=1,seed={seed}")
        assert response["CustomAttributes"] == f"trace=1,seed={seed}"
        return json.loads(response["Body"].read())

    assert ask(7) == ask(7) and ask(7) != ask(8)


def test_bad_input_is_a_clear_400_and_the_server_keeps_serving(runtime, tiny_model):
    huge = request_body(tiny_model, {"num_samples": 10_001})
    empty = json.dumps({"instances": [{"start": "2026-11-01 00:00:00", "target": []}]}).encode()
    too_many_paths = request_body(tiny_model, {"num_samples": 10_000}, count=11)
    for body, message in [(huge, "num_samples"), (empty, "non-empty"), (too_many_paths, "at most 100000")]:
        with pytest.raises(ClientError) as caught:
            runtime.invoke_endpoint(EndpointName="demo", Body=body)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert message in caught.value.response["Error"]["Message"]
    assert runtime.invoke_endpoint(EndpointName="demo", Body=request_body(tiny_model))["InvokedProductionVariant"]


def test_metrics_count_invocations_errors_and_latency_per_variant(server, runtime, tiny_model):
    _, hosting = server
    body = request_body(tiny_model, {"num_samples": 5})
    for _ in range(3):
        runtime.invoke_endpoint(EndpointName="demo", Body=body, TargetVariant="A")
    with pytest.raises(ClientError):
        runtime.invoke_endpoint(EndpointName="demo", Body=b"{}", TargetVariant="B")
    metrics = hosting.variant_metrics("demo", time.time() - 60, period=60)
    a, b = metrics["variants"]["A"]["total"], metrics["variants"]["B"]["total"]
    assert (a["invocations"], a["errors_4xx"], a["errors_5xx"]) == (3, 0, 0)
    assert (b["invocations"], b["errors_4xx"]) == (1, 1)
    assert a["model_latency_ms"] > 0 and a["overhead_latency_ms"] >= 0 and a["p99_latency_ms"] >= 1
    assert sum(p["invocations"] for p in metrics["variants"]["A"]["points"]) == 3


def test_smooth_weighted_routing_matches_the_weights_exactly():
    from dataplane.endpoint.registry import Router, Variant

    router = Router([Variant("A", "m", "k", 0.7), Variant("B", "m", "k", 0.3), Variant("S", "m", "k", 5, True)])
    served = Counter(router.next().name for _ in range(1000))
    assert served == {"A": 700, "B": 300}


def test_fast_lags_equal_gluonts(tiny_model):
    import torch
    from gluonts.torch.util import lagged_sequence_values

    from dataplane.endpoint.fastlags import lagged_sequence_values as fast

    lags = [1, 2, 3, 23, 24, 25, 47, 48]
    for prior, sequence, dim in [((4, 60), (4, 12), -1), ((4, 60, 3), (4, 1, 3), 1)]:
        a, b = torch.randn(*prior), torch.randn(*sequence)
        assert torch.equal(fast(lags, a, b, dim), lagged_sequence_values(lags, a, b, dim))


def test_worker_processes_share_changes_without_a_failed_request(lake, tiny_model_in_lake, tiny_model, tmp_path):
    """Two pre-forked workers: weights flip under concurrent load; every request succeeds and metrics merge."""
    import multiprocessing

    from dataplane.endpoint.server import serve
    from dataplane.ports import wait_for_port

    port = free_port()
    process = multiprocessing.get_context("fork").Process(
        target=serve, args=(lake, tmp_path / "state", "127.0.0.1", port, 2), daemon=True
    )
    process.start()
    try:
        wait_for_port(port, timeout=30)
        hosting = LocalEndpointHosting(f"http://127.0.0.1:{port}")
        variants = [VariantSpec("A", "tiny", TINY_MODEL_KEY, 1.0), VariantSpec("B", "tiny", TINY_MODEL_KEY, 1.0)]
        hosting.apply_endpoint("demo", variants)
        body, failures, served = request_body(tiny_model, {"num_samples": 2}), [], Counter()
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    served[hosting.invoke("demo", body).invoked_variant] += 1
                except Exception as exc:  # any failure at all fails the test
                    failures.append(exc)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for thread in threads:
            thread.start()
        for weight in (0.0, 1.0, 0.0):
            hosting.update_weights("demo", [variants[0], VariantSpec("B", "tiny", TINY_MODEL_KEY, weight)])
            time.sleep(0.4)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert failures == [] and served["A"] > served["B"] > 0
        counted = 0
        for _ in range(50):  # each worker flushes its finished seconds once a second
            total = hosting.variant_metrics("demo", time.time() - 60, 60)["variants"]
            counted = sum(total[name]["total"]["invocations"] for name in ("A", "B"))
            if counted >= sum(served.values()):
                break
            time.sleep(0.1)
        assert counted == sum(served.values())
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.join(timeout=15)
    assert process.exitcode == 0


def test_a_failing_model_is_sagemakers_model_error(server, runtime, lake, tiny_model):
    _, hosting = server
    lake.put_bytes("models/broken/output/model.tar.gz", broken_artifact(tiny_model.artifact))
    hosting.apply_endpoint("shaky", [VariantSpec("Bad", "broken", "models/broken/output/model.tar.gz", 1.0)])
    instance = {**json.loads(tiny_model.train_lines[0]), "cat": [5]}  # beyond the network's 3 categories
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="shaky", Body=json.dumps({"instances": [instance]}).encode())
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError" and error["ResponseMetadata"]["HTTPStatusCode"] == 424
    # boto3 parses SageMaker's modeled ModelError fields out of the body
    assert error["OriginalStatusCode"] == 500 and "IndexError" in error["OriginalMessage"]
    assert error["LogStreamArn"].endswith(":log-group:/aws/sagemaker/Endpoints/shaky")
    assert error["Error"]["Message"].startswith("Received server error (500) from primary with message")
    assert error["ResponseMetadata"]["HTTPHeaders"]["x-amzn-invoked-production-variant"] == "Bad"
    with pytest.raises(InvocationError) as through_hosting:
        hosting.invoke("shaky", json.dumps({"instances": [instance]}).encode())
    assert (through_hosting.value.status, through_hosting.value.error_type) == (424, "ModelError")
    ok = runtime.invoke_endpoint(EndpointName="demo", Body=request_body(tiny_model, {"num_samples": 2}))
    assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200  # the server keeps serving


@pytest.mark.parametrize("count", [1, 3, 40])  # 40 instances: more than one of the predictor's batches (32)
def test_fast_predictor_answers_exactly_as_gluonts(tiny_model, count):
    """FastDeepAR's seeded answer (samples included) is bit-identical to GluonTS's PyTorchPredictor path."""
    from cloud.deepar.model import DeepARModel
    from dataplane.endpoint import fastlags
    from dataplane.endpoint.fastpredict import FastDeepAR, forecaster, supports
    from dataplane.endpoint.server import parse_invocation

    fastlags.install()
    model = DeepARModel.from_tarball(tiny_model.artifact)
    assert supports(model) and isinstance(forecaster(model), FastDeepAR)
    instances = [json.loads(line) for line in tiny_model.train_lines]
    for offset, instance in enumerate(instances):  # other starts and lengths: time features made, then reused
        instance["target"] = instance["target"][5 * offset :]
        instance["start"] = str(pd.Timestamp(instance["start"]) + pd.Timedelta(hours=5 * offset))
    configuration = {"num_samples": 30, "output_types": ["mean", "quantiles", "samples"], "seed": 11}
    body = json.dumps({"instances": (instances * count)[:count], "configuration": configuration})
    request = parse_invocation(body.encode(), None)
    fast_model = forecaster(model)
    fast, plain = fast_model.predict(request), model.predict(request)
    assert json.dumps(fast) == json.dumps(plain)
    assert len(fast["predictions"]) == count and len(fast["predictions"][0]["samples"]) == 30
    other = fast_model.predict(parse_invocation(body.replace('"seed": 11', '"seed": 12').encode(), None))
    assert json.dumps(other) != json.dumps(fast)  # the seed decides the draws: the comparison can fail


def test_other_likelihoods_keep_gluonts_path(tiny_model):
    from gluonts.torch.distributions import NormalOutput

    from cloud.deepar.model import DeepARModel
    from dataplane.endpoint.fastpredict import forecaster

    model = DeepARModel.from_tarball(tiny_model.artifact)
    model.predictor.prediction_net.model.distr_output = NormalOutput()
    assert forecaster(model) is model


def test_registry_makes_one_fast_forecaster_per_loaded_model(lake, tiny_model_in_lake, tmp_path):
    from dataplane.endpoint.fastpredict import FastDeepAR
    from dataplane.endpoint.registry import EndpointRegistry, Variant

    registry = EndpointRegistry(lake, tmp_path / "state")
    registry.apply("demo", [Variant("A", "tiny", TINY_MODEL_KEY, 1.0)])
    first = registry.forecaster(TINY_MODEL_KEY)
    assert isinstance(first, FastDeepAR) and first.model is registry.model(TINY_MODEL_KEY)
    assert registry.forecaster(TINY_MODEL_KEY) is first
    registry.delete("demo")  # the model is dropped with its endpoint; serving it again loads it afresh
    registry.apply("demo", [Variant("A", "tiny", TINY_MODEL_KEY, 1.0)])
    again = registry.forecaster(TINY_MODEL_KEY)
    assert again is not first and again.model is registry.model(TINY_MODEL_KEY)


def test_targets_parse_the_same_with_and_without_missing_values():
    from cloud.deepar.formats import RequestError, parse_request

    def target(values: list) -> list[float]:
        return parse_request({"instances": [{"start": "2026-11-01 00:00:00", "target": values}]}).instances[0].target

    numbers = target([1, 2.5, 3])
    assert numbers == [1.0, 2.5, 3.0] and all(type(v) is float for v in numbers)
    mixed = target([1, None, "NaN", 2.5])
    assert mixed[0] == 1.0 and mixed[3] == 2.5 and all(v != v for v in mixed[1:3])
    with pytest.raises(RequestError, match=r"instances\[0\].target\[1\] must be a number"):
        target([1.0, True])
