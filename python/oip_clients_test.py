"""The Open Inference Protocol as real clients speak it: NVIDIA's `tritonclient`, with its
default settings, over HTTP (JSON and the binary tensor extension) and gRPC, against a
running `linear-dit serve`.

Run by scripts/oip-clients-test.sh, which installs the pinned tritonclient, starts the two
servers and stops them. Checks: health and metadata on both protocols; one forward as JSON,
as binary (tritonclient's default) and over gRPC, bit-identical; a mis-shaped input is HTTP
400 and gRPC INVALID_ARGUMENT; a full queue is HTTP 429 and gRPC RESOURCE_EXHAUSTED.

Usage: oip_clients_test.py --http HOST:PORT --grpc HOST:PORT
                           --overload-http HOST:PORT --overload-grpc HOST:PORT
Exits non-zero, naming the failed check, on any failure.
"""

import argparse
import json
import sys
import threading
import time
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "linear-dit"


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def inputs_for(module, metadata_inputs, x, t, y, binary):
    """The request's inputs, built the way a tritonclient user does."""
    arrays = {"x": x, "t": t, "y": y}
    inputs = []
    for meta in metadata_inputs:
        name = meta["name"] if isinstance(meta, dict) else meta.name
        datatype = meta["datatype"] if isinstance(meta, dict) else meta.datatype
        array = arrays[name]
        tensor = module.InferInput(name, list(array.shape), datatype)
        if binary is None:
            tensor.set_data_from_numpy(array)
        else:
            tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def example(config_d, tokens, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, tokens, config_d)).astype(np.float32)
    t = np.linspace(10.0, 900.0, batch).astype(np.float32)
    y = np.arange(batch, dtype=np.int64) % 10
    return x, t, y


def health_and_metadata(http, grpc):
    check(http.is_server_live(), "HTTP server live")
    check(http.is_server_ready(), "HTTP server ready")
    check(http.is_model_ready(MODEL), "HTTP model ready")
    check(grpc.is_server_live(), "gRPC server live")
    check(grpc.is_server_ready(), "gRPC server ready")
    check(grpc.is_model_ready(MODEL), "gRPC model ready")
    server = http.get_server_metadata()
    check(server["name"] == "linear-dit", f"HTTP server metadata names the server: {server}")
    grpc_server = grpc.get_server_metadata()
    check(grpc_server.name == "linear-dit", "gRPC server metadata names the server")
    model = http.get_model_metadata(MODEL)
    names = sorted(i["name"] for i in model["inputs"])
    check(names in (["t", "x"], ["t", "x", "y"]), f"HTTP model metadata inputs: {names}")
    check([o["name"] for o in model["outputs"]] == ["eps"], "HTTP model metadata output eps")
    grpc_model = grpc.get_model_metadata(MODEL)
    check(
        sorted(i.name for i in grpc_model.inputs) == names,
        "gRPC model metadata has the same inputs",
    )
    check([o.name for o in grpc_model.outputs] == ["eps"], "gRPC model metadata output eps")
    return model


def forwards(http, grpc, model):
    x_meta = next(i for i in model["inputs"] if i["name"] == "x")
    d = x_meta["shape"][-1]
    x, t, y = example(d, tokens=64)
    meta = model["inputs"]

    json_inputs = inputs_for(httpclient, meta, x, t, y, binary=False)
    json_outputs = [httpclient.InferRequestedOutput("eps", binary_data=False)]
    eps_json = http.infer(MODEL, json_inputs, outputs=json_outputs).as_numpy("eps")
    check(eps_json is not None and eps_json.shape == x.shape, f"HTTP JSON infer: eps {None if eps_json is None else eps_json.shape}")

    # tritonclient's defaults: binary inputs, and (no outputs named) binary outputs.
    binary_inputs = inputs_for(httpclient, meta, x, t, y, binary=None)
    eps_binary = http.infer(MODEL, binary_inputs).as_numpy("eps")
    check(eps_binary is not None and eps_binary.shape == x.shape, "HTTP binary infer (defaults)")

    grpc_inputs = inputs_for(grpcclient, meta, x, t, y, binary=None)
    eps_grpc = grpc.infer(MODEL, grpc_inputs).as_numpy("eps")
    check(eps_grpc is not None and eps_grpc.shape == x.shape, "gRPC infer")

    check(eps_json.dtype == np.float32 and eps_binary.dtype == np.float32 and eps_grpc.dtype == np.float32, "eps is FP32 everywhere")
    check(eps_json.tobytes() == eps_binary.tobytes(), "HTTP JSON and binary results are bit-identical")
    check(eps_json.tobytes() == eps_grpc.tobytes(), "HTTP and gRPC results are bit-identical")
    check(bool(np.isfinite(eps_json).all()), "eps is finite")
    return d


def bad_shape(http, grpc, model, d):
    # D + 1 features per token: the model cannot take it.
    x, t, y = example(d + 1, tokens=64)
    try:
        http.infer(MODEL, inputs_for(httpclient, model["inputs"], x, t, y, binary=None))
        check(False, "HTTP infer with a bad shape fails")
    except InferenceServerException as e:
        check(e.status() == "400", f"HTTP bad shape is 400 (got {e.status()}: {e.message()})")
    try:
        grpc.infer(MODEL, inputs_for(grpcclient, model["inputs"], x, t, y, binary=None))
        check(False, "gRPC infer with a bad shape fails")
    except InferenceServerException as e:
        check(
            e.status() == "StatusCode.INVALID_ARGUMENT",
            f"gRPC bad shape is INVALID_ARGUMENT (got {e.status()}: {e.message()})",
        )


def overload(http_addr, grpc_addr, d):
    """Against a server with --max-queue 1 --max-batch 2: a long guided generate holds every
    row, one forward waits in the queue, and the rest are refused."""
    blocker_done = threading.Event()

    def blocker():
        body = json.dumps({"class_label": 1, "num_steps": 1000, "format": "safetensors"}).encode()
        request = urllib.request.Request(
            f"http://{http_addr}/v1/generate", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
        finally:
            blocker_done.set()

    x, t, y = example(d, tokens=64)
    meta = httpclient.InferenceServerClient(http_addr).get_model_metadata(MODEL)["inputs"]
    outcomes = {"http": [], "grpc": []}
    lock = threading.Lock()

    def one(kind):
        try:
            if kind == "http":
                client = httpclient.InferenceServerClient(http_addr)
                client.infer(MODEL, inputs_for(httpclient, meta, x, t, y, binary=None))
            else:
                client = grpcclient.InferenceServerClient(grpc_addr)
                client.infer(MODEL, inputs_for(grpcclient, meta, x, t, y, binary=None))
            status = "ok"
        except InferenceServerException as e:
            status = str(e.status())
        with lock:
            outcomes[kind].append(status)

    threading.Thread(target=blocker, daemon=True).start()
    time.sleep(0.2)  # let the generate be admitted first, so the flood meets a full engine
    flood = [threading.Thread(target=one, args=(k,)) for k in ["http", "grpc"] * 12]
    for thread in flood:
        thread.start()
    for thread in flood:
        thread.join(timeout=300)
    blocker_done.wait(timeout=300)
    print(f"overload outcomes: {outcomes}")
    check(all(s in ("ok", "429") for s in outcomes["http"]), "HTTP under overload: only successes and 429")
    check("429" in outcomes["http"], "HTTP overload answers 429")
    check(
        all(s in ("ok", "StatusCode.RESOURCE_EXHAUSTED") for s in outcomes["grpc"]),
        "gRPC under overload: only successes and RESOURCE_EXHAUSTED",
    )
    check("StatusCode.RESOURCE_EXHAUSTED" in outcomes["grpc"], "gRPC overload answers RESOURCE_EXHAUSTED")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--overload-http", required=True)
    parser.add_argument("--overload-grpc", required=True)
    args = parser.parse_args()
    http = httpclient.InferenceServerClient(args.http)
    grpc = grpcclient.InferenceServerClient(args.grpc)
    try:
        model = health_and_metadata(http, grpc)
        d = forwards(http, grpc, model)
        bad_shape(http, grpc, model, d)
        overload(args.overload_http, args.overload_grpc, d)
    except (AssertionError, InferenceServerException) as e:
        print(f"oip_clients_test: FAILED: {e}", file=sys.stderr)
        return 1
    print("oip_clients_test: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
