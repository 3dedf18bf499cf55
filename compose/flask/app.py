"""A small Flask API to put behind Shoal.

GET  /          {"hostname", "service", "version"}: which replica answered
GET  /healthz   {"status": "ok"}
GET  /slow?ms=N answers after N milliseconds (at most 30000)
POST /work      {"bytes": N, "hostname"}: the size of the request body
POST /echo      the request body, unchanged

URL_PREFIX (default "") mounts every route under a prefix, e.g. /admin, for
routing by path: Shoal forwards the path as it came, like NGINX's proxy_pass
without a URI.
"""

import os
import socket
import time

from flask import Blueprint, Flask, Response, jsonify, request

APP_VERSION = os.environ.get("APP_VERSION", "dev")
SERVICE = os.environ.get("APP_SERVICE", "api")
HOSTNAME = socket.gethostname()
PREFIX = os.environ.get("URL_PREFIX", "").rstrip("/")
MAX_SLOW_MS = 30000

api = Blueprint("api", __name__)


@api.get("/")
def index():
    return jsonify(hostname=HOSTNAME, service=SERVICE, version=APP_VERSION)


@api.get("/healthz")
def healthz():
    return jsonify(status="ok")


@api.get("/slow")
def slow():
    try:
        ms = int(request.args.get("ms", "100"))
    except ValueError:
        return jsonify(error="ms must be an integer number of milliseconds"), 400
    ms = max(0, min(ms, MAX_SLOW_MS))
    time.sleep(ms / 1000)
    return jsonify(hostname=HOSTNAME, slept_ms=ms)


@api.post("/work")
def work():
    return jsonify(bytes=len(request.get_data(cache=False)), hostname=HOSTNAME)


@api.post("/echo")
def echo():
    return Response(request.get_data(cache=False), mimetype=request.mimetype or "application/octet-stream")


app = Flask(__name__)
app.register_blueprint(api, url_prefix=PREFIX or None)
