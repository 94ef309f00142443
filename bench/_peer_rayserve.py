"""A peer of ``bench.peers``: the iris model as a Ray Serve deployment, on a Ray cluster of this
process's own (``ray.init``, 2 CPUs), behind Ray Serve's HTTP proxy.

One replica, no batching, tuned as Ray's docs advise for throughput: ``max_ongoing_requests``
32 (the clients) and no CPU reserved per replica. The deployment is bench._ray_handwritten's.
Run with Ray's environment: python -m bench._peer_rayserve MODEL_DIR PORT
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


def main() -> None:
    import ray
    from ray import serve

    from bench._ray_handwritten import HandWrittenIris

    model_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = serve.deployment(
            HandWrittenIris,
            num_replicas=1,
            max_ongoing_requests=32,
            ray_actor_options={"num_cpus": 0},
        )
        serve.run(app.bind(str(model_dir)), name="iris", route_prefix="/iris")
        print("ready", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
