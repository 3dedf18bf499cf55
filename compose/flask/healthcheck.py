"""Docker HEALTHCHECK without curl: exit 0 when /healthz answers 2xx."""

import os
import sys
import urllib.request

url = "http://127.0.0.1:%s%s/healthz" % (
    os.environ.get("PORT", "8000"),
    os.environ.get("URL_PREFIX", "").rstrip("/"),
)
try:
    with urllib.request.urlopen(url, timeout=2) as resp:
        sys.exit(0 if 200 <= resp.status < 300 else 1)
except Exception as exc:  # any failure is "unhealthy"; say why in docker inspect
    print("healthcheck %s: %s" % (url, exc), file=sys.stderr)
    sys.exit(1)
