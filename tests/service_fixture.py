"""Pytest plugin: one real two-node Ray cluster on loopback for the whole session, with the app deployed
from deploy/config.yaml (paths, port, token and worker counts overridden for this machine). Registered once
in tests/conftest.py, so service and client tests share the same cluster.

Nodes: a head labelled ``head`` and a second node labelled ``air``, like the two-laptop setup.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKERS_PER_LABEL = {"head": 1, "air": 2}
TOKEN = "test-token-please-ignore"
ADMIN_TOKEN = "test-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    url: str
    port: int
    token: str
    cluster: object
    data_dir: Path
    state_dir: Path
    air_node: object = None

    def client(self, **kwargs):
        from client import MinerClient

        return MinerClient(self.url, self.token, **kwargs)

    def admin(self):
        return self.client(admin_token=ADMIN_TOKEN)

    def deploy(self, args_overrides: dict | None = None, workers: dict | None = None, **runtime_overrides) -> None:
        """Deploy deploy/config.yaml exactly as `serve deploy` does (the controller's apply_config), with
        this machine's paths, port, tokens and worker counts; overrides change args, workers per label or
        user_config."""
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeDeploySchema

        config = yaml.safe_load((REPO / "deploy" / "config.yaml").read_text())
        config["http_options"] = {"host": "127.0.0.1", "port": self.port}
        (application,) = config["applications"]
        (deployment,) = application["deployments"]
        application["args"].update({
            "store_path": str(self.state_dir / "miner.db"), "data_dir": str(self.data_dir),
            "upload_dir": str(self.state_dir / "uploads"), "token": self.token, "admin_token": ADMIN_TOKEN,
            "max_upload_mb": 5, **(args_overrides or {})})
        user_config = {**deployment["user_config"], **runtime_overrides}
        user_config["pool"] = {**user_config["pool"], "workers_per_label": workers or WORKERS_PER_LABEL}
        deployment["user_config"] = user_config
        _get_global_client().deploy_apps(ServeDeploySchema(**config), _blocking=True)


    @contextlib.contextmanager
    def deployed(self, args_overrides: dict | None = None, workers: dict | None = None, **runtime_overrides):
        """Deploy with overrides for the length of a block, then the plain configuration again, all workers up."""
        self.deploy(args_overrides, workers, **runtime_overrides)
        try:
            yield
        finally:
            self.deploy()
            self.wait_for_workers(sum(WORKERS_PER_LABEL.values()))

    def start(self) -> None:
        """Start Ray (two nodes on loopback) and Serve, deploy the app and wait for every worker."""
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster

        from serve_app.config import NAMESPACE, RAY_SYSTEM_CONFIG

        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"head": 2},
                                                                     "_system_config": RAY_SYSTEM_CONFIG})
        self.add_air_node()
        ray.init(address=self.cluster.address, namespace=NAMESPACE, logging_level="WARNING", log_to_driver=False)
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": self.port})
        self.deploy()
        self.wait_for_workers(sum(WORKERS_PER_LABEL.values()))

    def add_air_node(self) -> None:
        """The second laptop: two CPUs, labelled ``air`` (joining, or rejoining after it was lost)."""
        self.air_node = self.cluster.add_node(num_cpus=2, resources={"air": 2})

    def stop(self) -> None:
        """Stop Ray entirely, as a power cut would: nothing is shut down politely."""
        import ray

        ray.shutdown()
        self.cluster.shutdown()

    @contextlib.contextmanager
    def power_cut(self):
        """Ray stopped entirely (``stop``) for the length of a block, then started again on the same data, state and
        port, also when the block fails: one failing test must not take the session's service with it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def wait_for_workers(self, count: int, timeout_s: float = 300) -> None:
        """Until the pool has ``count`` ready workers: on a fresh checkout each compiles the kernels first (20-40 s
        alone, minutes for several at once on 2 busy cores, e.g. beside a CPU hog)."""
        with self.client() as client:
            deadline = time.monotonic() + timeout_s
            while client.cluster().workers != count:
                assert time.monotonic() < deadline, f"workers never came to {count}: {client.cluster()}"
                time.sleep(0.5)


@pytest.fixture(scope="session")
def service(tmp_path_factory, btc_path):
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / btc_path.name).symlink_to(btc_path)  # the shared file, never a copy
    port = free_port()
    svc = Service(f"http://127.0.0.1:{port}", port, TOKEN, None, data_dir, tmp_path_factory.mktemp("state"))
    svc.start()
    yield svc
    from ray import serve

    serve.shutdown()
    svc.stop()


@pytest.fixture
def client(service):
    with service.client() as c:
        yield c
