"""gunicorn settings for the Flask API, read from the environment.

PORT (8000), WEB_WORKERS (2) and WEB_THREADS (4) size the server;
WEB_KEEPALIVE (75) is how long idle keep-alive connections stay open.

On SIGTERM gunicorn first keeps serving for SHUTDOWN_DELAY seconds (2), then
stops accepting, lets in-flight requests finish within GRACEFUL_TIMEOUT
seconds (7) and exits: 9s in all, below Docker's 10s stop timeout.
"""

import os
import time

bind = "0.0.0.0:" + os.environ.get("PORT", "8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "7"))
shutdown_delay = float(os.environ.get("SHUTDOWN_DELAY", "2"))
timeout = 60  # /slow may take up to 30s
# Keep idle connections from the load balancer open longer than it keeps
# them (Shoal: 30s, NGINX upstream keepalive_timeout: 60s). If the app closed
# them first, the balancer could send a request on a connection that is
# being closed and count the reset against a healthy replica.
keepalive = int(os.environ.get("WEB_KEEPALIVE", "75"))
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# No world-writable /tmp is needed for worker heartbeats.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def when_ready(server):
    """Delay the shutdown that SIGTERM starts by shutdown_delay seconds.

    Docker signals the container and only then announces the stop, so a load
    balancer that drains on that event (Shoal) or on a failed health check
    (NGINX) still sends requests for a moment. Without the delay, gunicorn
    would close its keep-alive connections with such requests unanswered,
    and a POST cannot be retried. The same reason gives Kubernetes' preStop
    sleep.
    """
    if shutdown_delay <= 0:
        return
    term = server.handle_term

    def handle_term():
        server.log.info("SIGTERM: serving %.1fs more so that the load balancer stops sending first", shutdown_delay)
        time.sleep(shutdown_delay)
        term()

    server.handle_term = handle_term
