"""Ray plumbing shared by the Ray executors: the session, the nodes, payload sizes.

Nothing here makes scheduling decisions; those live in the Rust core (`nemo_curator._core`).
"""

from nemo_curator.backends.ray_utils.nodes import (
    ClusterNode,
    cluster_nodes,
    put_stage,
    run_setup_on_node,
    wait_for_resources,
)
from nemo_curator.backends.ray_utils.payload import payload_nbytes
from nemo_curator.backends.ray_utils.session import RaySession

__all__ = [
    "ClusterNode",
    "RaySession",
    "cluster_nodes",
    "payload_nbytes",
    "put_stage",
    "run_setup_on_node",
    "wait_for_resources",
]
